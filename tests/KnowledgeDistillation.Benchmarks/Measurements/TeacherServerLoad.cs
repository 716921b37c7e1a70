using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Remote;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// The teacher server under load: the ready host (kd-teacher-server, a separate process) serving the TinyGpt teacher
/// (top-32 at T = 2), and N concurrent clients each sending [8, 64]-token batches back to back for a fixed time.
/// Reports throughput (requests and tokens per second), client-side p50/p99 latency, errors, the server's forward
/// passes per request (dynamic batching), and its resident memory after a warm-up round and after the run.
/// </summary>
internal static class TeacherServerLoad
{
    public static int Run(string hostDll, int seconds, int[] clientCounts)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"kd-load-{Environment.ProcessId}");
        manual_seed(1);
        PretrainedFolder.Save(new GptModel(Workloads.Teacher), folder);
        using Process server = StartHost(hostDll, folder, out Uri url);
        try
        {
            using var http = new HttpClient { BaseAddress = url };
            byte[] body = Body(8);
            RunClients(http, body, 2, TimeSpan.FromSeconds(3)); // warm-up: JIT, allocator, thread pool
            long rssWarm = Rss(server.Id);
            Console.WriteLine($"server: TinyGpt teacher (834k parameters), top-32 at T = 2; requests of 8 × 64 tokens; {seconds} s per row; resident memory after warm-up {rssWarm / (1 << 20)} MB");
            Console.WriteLine("| clients | requests/s | tokens/s | p50 ms | p99 ms | errors | requests per forward pass | server resident MB after |");
            Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (int clients in clientCounts)
            {
                JsonElement before = Metrics(http);
                (int requests, int errors, double[] latencies) = RunClients(http, body, clients, TimeSpan.FromSeconds(seconds));
                JsonElement after = Metrics(http);
                double passes = after.GetProperty("forwardPasses").GetInt64() - before.GetProperty("forwardPasses").GetInt64();
                Array.Sort(latencies);
                double P(double q) => latencies.Length == 0 ? double.NaN : latencies[(int)Math.Min(latencies.Length - 1, Math.Ceiling(q * latencies.Length) - 1)];
                Console.WriteLine($"| {clients} | {requests / (double)seconds:F1} | {requests * 8 * 64 / (double)seconds:N0} | {P(0.5):F1} | {P(0.99):F1} | {errors} | " +
                    $"{(passes == 0 ? 0 : requests / passes):F2} | {Rss(server.Id) / (1 << 20)} |");
            }
            return 0;
        }
        finally
        {
            server.Kill(entireProcessTree: true);
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>kd-teacher-server serving the TinyGpt folder's top-32 at T = 2.</summary>
    internal static Process StartHost(string hostDll, string folder, out Uri url) => StartHost(hostDll, ["--model", folder, "--top-k", "32", "--temperature", "2"], out url);

    /// <summary>kd-teacher-server with <paramref name="arguments"/>, on a free loopback port.</summary>
    internal static Process StartHost(string hostDll, string[] arguments, out Uri url)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in (string[])[hostDll, .. arguments, "--urls", "http://127.0.0.1:0"]) start.ArgumentList.Add(a);
        Process process = Process.Start(start)!;
        string banner = process.StandardOutput.ReadLine() ?? throw new InvalidOperationException("The teacher server printed nothing.");
        // "listening on http://127.0.0.1:PORT serving …"
        url = new Uri(banner.Split(' ')[2].TrimEnd('/') + "/");
        return process;
    }

    private static byte[] Body(int sequences)
    {
        manual_seed(2);
        return TeacherWire.EncodeRequest(new TokenBatch(randint(0, Workloads.Vocabulary, [sequences, Workloads.Context])));
    }

    private static (int Requests, int Errors, double[] Latencies) RunClients(HttpClient http, byte[] body, int clients, TimeSpan duration)
    {
        var latencies = new System.Collections.Concurrent.ConcurrentBag<double>();
        int errors = 0;
        var stop = DateTime.UtcNow + duration;
        Task[] workers = Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            while (DateTime.UtcNow < stop)
            {
                var clock = Stopwatch.StartNew();
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = new MediaTypeHeaderValue(TeacherWire.RequestContentType);
                using HttpResponseMessage response = await http.PostAsync("v1/outputs", content);
                await response.Content.ReadAsByteArrayAsync();
                if (response.IsSuccessStatusCode) latencies.Add(clock.Elapsed.TotalMilliseconds);
                else Interlocked.Increment(ref errors);
            }
        })).ToArray();
        Task.WaitAll(workers);
        return (latencies.Count, errors, latencies.ToArray());
    }

    private static JsonElement Metrics(HttpClient http) => JsonDocument.Parse(http.GetStringAsync("metrics").GetAwaiter().GetResult()).RootElement.Clone();

    /// <summary>Resident memory of a process (VmRSS in /proc), in bytes.</summary>
    internal static long Rss(int pid) => Status(pid, "VmRSS:");

    /// <summary>Peak resident memory of a process (VmHWM in /proc), in bytes.</summary>
    internal static long PeakRss(int pid) => Status(pid, "VmHWM:");

    private static long Status(int pid, string field)
    {
        string line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(field, StringComparison.Ordinal));
        return long.Parse(line[field.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }
}
