using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace KnowledgeDistillation.Tests.Remote;

/// <summary>The ready host (kd-teacher-server) as a separate process on a loopback port, killed as a crash would kill it.</summary>
internal sealed class ServerProcess : IDisposable
{
    private readonly Process _process;

    private ServerProcess(Process process, Uri url, string banner)
    {
        _process = process;
        Url = url;
        Banner = banner;
    }

    public Uri Url { get; }

    /// <summary>The host's first line: where it listens, what it serves, the fingerprint.</summary>
    public string Banner { get; }

    public static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>Starts the host with <paramref name="arguments"/> on <paramref name="port"/> and waits for its banner (60 s at most).</summary>
    public static ServerProcess Start(int port, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(BuildFacts.TeacherServerHost);
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        start.ArgumentList.Add("--urls");
        start.ArgumentList.Add($"http://127.0.0.1:{port}");
        Process process = Process.Start(start)!;
        var errors = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (errors) errors.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        Task<string?> line = process.StandardOutput.ReadLineAsync();
        if (!line.Wait(TimeSpan.FromSeconds(60)) || line.Result is not { } banner || !banner.StartsWith("listening on", StringComparison.Ordinal))
        {
            process.Kill(entireProcessTree: true);
            lock (errors) throw new InvalidOperationException($"The teacher server did not start: {line.Result ?? "(no output)"} {errors}");
        }
        return new ServerProcess(process, new Uri($"http://127.0.0.1:{port}/"), banner);
    }

    /// <summary>SIGKILL: no shutdown, connections dropped.</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
    }
}
