using System.Diagnostics;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Remote;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// The trainer's process with the TinyGpt teacher in it against the same teacher served by kd-teacher-server (top-32 at
/// T = 2, the soft-target term at T = 2): peak resident memory of the trainer's process (VmHWM) and the median step
/// time over 40 steps after 5 of warm-up, batch 32 × 64 tokens. <c>compare</c> runs each in a fresh process of its own,
/// one after the other, and prints both with their ratio.
/// </summary>
internal static class RemoteTeacherStep
{
    private const int WarmUp = 5, Measured = 40;

    public static int Run(string hostDll, string mode)
    {
        if (mode == "compare") return Compare();
        manual_seed(1);
        var teacher = new GptModel(Workloads.Teacher);
        List<DistillationBatch<TokenBatch>> data = Workloads.RandomBatches(WarmUp + Measured);
        Process? server = null;
        string? folder = null;
        IDistillationModel<TokenBatch> used = teacher;
        if (mode == "remote")
        {
            folder = Path.Combine(Path.GetTempPath(), $"kd-step-{Environment.ProcessId}");
            PretrainedFolder.Save(teacher, folder);
            server = TeacherServerLoad.StartHost(hostDll, folder, out Uri url);
            used = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [url] });
            teacher.Dispose();
            GC.Collect();
        }
        else if (mode != "in-process")
        {
            Console.Error.WriteLine($"remote-teacher-step: expected in-process, remote or compare; got {mode}.");
            return 1;
        }
        try
        {
            var times = new List<double>();
            var clock = Stopwatch.StartNew();
            var trainer = new DistillationTrainer<TokenBatch>(used, new GptModel(Workloads.Student), Workloads.Objective(), Workloads.Options(WarmUp + Measured));
            trainer.Train(data, callbacks: [new StepClock(clock, times)]);
            double median = times.Skip(WarmUp).Order().ElementAt(Measured / 2);
            Console.WriteLine($"RESULT {mode} {TeacherServerLoad.PeakRss(Environment.ProcessId) / (double)(1 << 20):F0} {median:F1}");
            return 0;
        }
        finally
        {
            server?.Kill(entireProcessTree: true);
            if (folder is not null) Directory.Delete(folder, recursive: true);
        }
    }

    private static int Compare()
    {
        var results = new Dictionary<string, (double PeakMb, double StepMs)>();
        foreach (string mode in new[] { "in-process", "remote" })
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (string a in (string[])[typeof(RemoteTeacherStep).Assembly.Location, "measure", "remote-teacher-step", mode]) start.ArgumentList.Add(a);
            using Process process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            string line = output.Split('\n').Single(l => l.StartsWith("RESULT ", StringComparison.Ordinal));
            string[] parts = line.Split(' ');
            results[mode] = (double.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture), double.Parse(parts[3], System.Globalization.CultureInfo.InvariantCulture));
        }
        (double inPeak, double inStep) = results["in-process"];
        (double remotePeak, double remoteStep) = results["remote"];
        Console.WriteLine("| teacher | trainer peak resident MB | median step ms |");
        Console.WriteLine("|---|---:|---:|");
        Console.WriteLine($"| in the trainer's process | {inPeak:F0} | {inStep:F1} |");
        Console.WriteLine($"| kd-teacher-server (loopback) | {remotePeak:F0} | {remoteStep:F1} |");
        Console.WriteLine($"| remote / in-process | {remotePeak / inPeak:F2} | {remoteStep / inStep:F2} |");
        return 0;
    }

    private sealed class StepClock(Stopwatch clock, List<double> times) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            times.Add(clock.Elapsed.TotalMilliseconds);
            clock.Restart();
        }
    }
}
