using System.Diagnostics;

namespace KnowledgeDistillation.Tests;

/// <summary>Starts the <c>dotnet</c> host for tests that build or run another program.</summary>
internal static class DotnetProcess
{
    /// <summary>The start info for <c>dotnet ARGUMENTS</c>, outputs redirected, without the MSBuild settings that <c>dotnet test</c> passes to its children.</summary>
    public static ProcessStartInfo StartInfo(string? workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet", arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (workingDirectory is not null) start.WorkingDirectory = workingDirectory;
        // The test host inherits MSBuild's own settings from `dotnet test`; a nested build must start clean.
        foreach (string key in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList()) start.Environment.Remove(key);
        return start;
    }

    /// <summary>Runs <c>dotnet ARGUMENTS</c> to the end; its exit code and everything it printed.</summary>
    /// <exception cref="TimeoutException">It did not finish within <paramref name="timeout"/> (it is killed).</exception>
    public static (int ExitCode, string Output, string Error) Run(string? workingDirectory, TimeSpan timeout, params string[] arguments)
    {
        using Process process = Process.Start(StartInfo(workingDirectory, arguments))!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', arguments)} did not finish within {timeout}.");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
