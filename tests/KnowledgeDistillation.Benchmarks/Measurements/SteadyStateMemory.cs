using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// Native memory over 1,000 trainer steps on the TinyGpt teacher/student (fresh random batches every step, disposed
/// after use, as a real data stream does), sampled every 100 steps; then the peak above the resting process of
/// single steps at batch sizes 8, 32 and 64.
/// </summary>
internal static class SteadyStateMemory
{
    private sealed class Sampler(List<(long Step, double ResidentMb, double LiveMb, long Tensors)> samples) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (report.Step == 1 || report.Step % 100 == 0) samples.Add((report.Step, NativeMemory.ResidentMegabytes, NativeMemory.LiveMegabytes, Tensor.TotalCount));
        }
    }

    private static IEnumerable<DistillationBatch<TokenBatch>> Stream(int batch)
    {
        while (true) yield return Workloads.RandomBatch(batch) with { DisposeAfterUse = true };
    }

    /// <summary>The same 1,000 steps written with raw TorchSharp, sampled the same way: what TorchSharp and libtorch do on their own.</summary>
    private static void HandWritten(GptModel teacher, GptModel student, IEnumerable<DistillationBatch<TokenBatch>> stream, Sampler sampler)
    {
        teacher.eval();
        var optimizer = optim.AdamW(student.parameters(), Workloads.LearningRate, weight_decay: 0.01);
        long step = 0;
        foreach (DistillationBatch<TokenBatch> batch in stream.Take(1000))
        {
            Workloads.HandWrittenStep(teacher, student, optimizer, batch);
            batch.Inputs.InputIds.Dispose();
            batch.Labels!.Dispose();
            sampler.OnStepEnd(new StepReport(++step, 0, 0, new Dictionary<string, double>(), 0, 0, false, null), new TrainerControl());
        }
    }

    public static int Run(bool handWritten)
    {
        if (!NativeMemory.CanMeasure("steady-memory")) return 1;
        NativeMemory.SingleArena();
        manual_seed(1);
        var teacher = new GptModel(Workloads.Teacher);
        var samples = new List<(long Step, double ResidentMb, double LiveMb, long Tensors)>();
        var timer = System.Diagnostics.Stopwatch.StartNew();
        if (handWritten) HandWritten(teacher, new GptModel(Workloads.Student), Stream(8), new Sampler(samples));
        else new DistillationTrainer<TokenBatch>(teacher, new GptModel(Workloads.Student), Workloads.Objective(), Workloads.Options(1000))
            .Train(_ => Stream(8), callbacks: [new Sampler(samples)]);
        Console.WriteLine(handWritten ? "hand-written TorchSharp loop (the control):" : "DistillationTrainer:");
        Console.WriteLine($"1,000 steps at batch 8 x {Workloads.Context} tokens in {timer.Elapsed.TotalSeconds:F0} s");
        Console.WriteLine("| step | resident memory | allocated (malloc, live) | live tensors |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var (step, mb, live, tensors) in samples) Console.WriteLine($"| {step:N0} | {mb:F1} MB | {live:F1} MB | {tensors:N0} |");
        var late = samples.Where(s => s.Step >= 200).ToList();
        Console.WriteLine($"from step 200 to step 1,000: resident {late[^1].ResidentMb - late[0].ResidentMb:+0.0;-0.0} MB, allocated {late[^1].LiveMb - late[0].LiveMb:+0.0;-0.0} MB, " +
            $"live tensors {late[^1].Tensors - late[0].Tensors:+0;-0}");
        return 0;
    }
}
