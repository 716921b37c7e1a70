using System.Diagnostics;
using System.Globalization;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Remote;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// The trainer's process with its teacher in it against the same teacher served by kd-teacher-server: peak resident
/// memory of the trainer's process (VmHWM) and the median step time after a warm-up. Two workloads: <c>tiny-gpt</c>
/// (the TinyGpt teacher, top-32 at T = 2, the soft-target term at T = 2, batch 32 × 64, 40 steps after 5) and
/// <c>minilm</c> (all-MiniLM-L6-v2 in ONNX Runtime, mean-pooled normalised embeddings as float32 values, a 2-layer BERT
/// student on 1 − cos, batch 32 × 64, 20 steps after 3). <c>compare</c> runs each mode in a fresh process of its own,
/// one after the other, and prints both with their ratio.
/// </summary>
internal static class RemoteTeacherStep
{
    public static int Run(string hostDll, string mode, string workload)
    {
        if (workload is not ("tiny-gpt" or "minilm"))
        {
            Console.Error.WriteLine($"remote-teacher-step: the workload must be tiny-gpt or minilm; got {workload}.");
            return 1;
        }
        if (mode == "compare") return Compare(workload);
        if (mode is not ("in-process" or "remote"))
        {
            Console.Error.WriteLine($"remote-teacher-step: expected in-process, remote or compare; got {mode}.");
            return 1;
        }
        return workload == "tiny-gpt" ? TinyGpt(hostDll, mode) : MiniLm(hostDll, mode);
    }

    private static int TinyGpt(string hostDll, string mode)
    {
        const int warmUp = 5, measured = 40;
        manual_seed(1);
        var teacher = new GptModel(Workloads.Teacher);
        List<DistillationBatch<TokenBatch>> data = Workloads.RandomBatches(warmUp + measured);
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
        try
        {
            return Measure(mode, used, new GptModel(Workloads.Student), Workloads.Objective(), data, warmUp, measured, server);
        }
        finally
        {
            server?.Kill(entireProcessTree: true);
            if (folder is not null) Directory.Delete(folder, recursive: true);
        }
    }

    private static int MiniLm(string hostDll, string mode)
    {
        const int warmUp = 3, measured = 20;
        List<DistillationBatch<TokenBatch>> data = MiniLmWorkload.Batches(warmUp + measured);
        Process? server = null;
        IDistillationModel<TokenBatch> used;
        if (mode == "remote")
        {
            server = TeacherServerLoad.StartHost(hostDll, MiniLmWorkload.HostArguments(), out Uri url);
            used = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [url] });
        }
        else
        {
            used = MiniLmWorkload.Teacher();
        }
        try
        {
            return Measure(mode, used, MiniLmWorkload.Student(), MiniLmWorkload.Objective(), data, warmUp, measured, server);
        }
        finally
        {
            server?.Kill(entireProcessTree: true);
        }
    }

    private static int Measure(string mode, IDistillationModel<TokenBatch> teacher, IModuleModel<TokenBatch> student,
        KnowledgeDistillation.Objectives.DistillationObjective objective, List<DistillationBatch<TokenBatch>> data, int warmUp, int measured, Process? server)
    {
        var times = new List<double>();
        var clock = Stopwatch.StartNew();
        var trainer = new DistillationTrainer<TokenBatch>(teacher, student, objective, Workloads.Options(warmUp + measured));
        trainer.Train(data, callbacks: [new StepClock(clock, times)]);
        double median = times.Skip(warmUp).Order().ElementAt(measured / 2);
        double serverPeak = server is null ? 0 : TeacherServerLoad.PeakRss(server.Id) / (double)(1 << 20);
        Console.WriteLine($"RESULT {mode} {TeacherServerLoad.PeakRss(Environment.ProcessId) / (double)(1 << 20):F0} {median:F1} {serverPeak:F0}");
        return 0;
    }

    private static int Compare(string workload)
    {
        var results = new Dictionary<string, (double PeakMb, double StepMs, double ServerPeakMb)>();
        foreach (string mode in new[] { "in-process", "remote" })
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (string a in (string[])[typeof(RemoteTeacherStep).Assembly.Location, "measure", "remote-teacher-step", mode, workload]) start.ArgumentList.Add(a);
            using Process process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            string line = output.Split('\n').Single(l => l.StartsWith("RESULT ", StringComparison.Ordinal));
            string[] parts = line.Split(' ');
            results[mode] = (double.Parse(parts[2], CultureInfo.InvariantCulture), double.Parse(parts[3], CultureInfo.InvariantCulture), double.Parse(parts[4], CultureInfo.InvariantCulture));
        }
        (double inPeak, double inStep, _) = results["in-process"];
        (double remotePeak, double remoteStep, double serverPeak) = results["remote"];
        Console.WriteLine($"workload: {workload}");
        Console.WriteLine("| teacher | trainer peak resident MB | median step ms |");
        Console.WriteLine("|---|---:|---:|");
        Console.WriteLine($"| in the trainer's process | {inPeak:F0} | {inStep:F1} |");
        Console.WriteLine($"| kd-teacher-server (loopback) | {remotePeak:F0} | {remoteStep:F1} |");
        Console.WriteLine($"| remote / in-process | {remotePeak / inPeak:F2} | {remoteStep / inStep:F2} |");
        Console.WriteLine($"the server's own peak resident memory: {serverPeak:F0} MB");
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
