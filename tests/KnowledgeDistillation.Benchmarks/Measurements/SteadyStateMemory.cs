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
    private sealed class Sampler(List<(long Step, double ResidentMb, long Tensors)> samples) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (report.Step == 1 || report.Step % 100 == 0) samples.Add((report.Step, NativeMemory.ResidentMegabytes, Tensor.TotalCount));
        }
    }

    private static IEnumerable<DistillationBatch<TokenBatch>> Stream(int batch)
    {
        while (true)
        {
            using var scope = NewDisposeScope();
            Tensor tokens = randint(0, Workloads.Vocabulary, [batch, Workloads.Context + 1]);
            var b = new DistillationBatch<TokenBatch>(
                new TokenBatch(tokens[.., ..Workloads.Context].contiguous().DetachFromDisposeScope()), tokens[.., 1..].contiguous().DetachFromDisposeScope()) { DisposeAfterUse = true };
            yield return b;
        }
    }

    public static int Run()
    {
        if (!NativeMemory.Available)
        {
            Console.Error.WriteLine("steady-memory reads /proc/self (Linux only).");
            return 1;
        }
        manual_seed(1);
        var teacher = new GptModel(Workloads.Teacher);
        var samples = new List<(long Step, double ResidentMb, long Tensors)>();
        var trainer = new DistillationTrainer<TokenBatch>(teacher, new GptModel(Workloads.Student), Workloads.Objective(), Workloads.Options(1000));
        var timer = System.Diagnostics.Stopwatch.StartNew();
        trainer.Train(_ => Stream(8), callbacks: [new Sampler(samples)]);
        Console.WriteLine($"1,000 steps at batch 8 x {Workloads.Context} tokens in {timer.Elapsed.TotalSeconds:F0} s");
        Console.WriteLine("| step | resident memory | live tensors |");
        Console.WriteLine("|---|---|---|");
        foreach (var (step, mb, tensors) in samples) Console.WriteLine($"| {step:N0} | {mb:F1} MB | {tensors:N0} |");
        var late = samples.Where(s => s.Step >= 200).ToList();
        Console.WriteLine($"growth from step 200 to step 1,000: {late[^1].ResidentMb - late[0].ResidentMb:+0.0;-0.0} MB, live tensors {late[^1].Tensors - late[0].Tensors:+0;-0}");

        Console.WriteLine();
        Console.WriteLine("| batch (x 64 tokens) | peak above the resting process during one step |");
        Console.WriteLine("|---|---|");
        foreach (int batch in new[] { 8, 32, 64 })
        {
            var one = new DistillationTrainer<TokenBatch>(teacher, new GptModel(Workloads.Student), Workloads.Objective(), Workloads.Options(1));
            one.Train(_ => Stream(batch)); // warm-up: optimizer state and gradient buffers exist from here on
            double peak = Enumerable.Range(0, 3).Min(_ => NativeMemory.PeakAbove(() => one.Train(_ => Stream(batch))));
            Console.WriteLine($"| {batch} | {peak:F1} MB |");
        }
        return 0;
    }
}
