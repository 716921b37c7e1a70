using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// Peak native memory of one trainer step on the TinyGpt teacher/student above the resting process, at several
/// batch sizes. Runs in a fresh process with every block of 1 MB or more mapped on its own from the start, so
/// that no retained heap hides the step's activations.
/// </summary>
internal static class StepMemory
{
    public static int Run()
    {
        if (!NativeMemory.CanMeasure("step-memory")) return 1;
        NativeMemory.TrackLargeAllocations();
        manual_seed(1);
        var teacher = new GptModel(Workloads.Teacher);
        Console.WriteLine("| batch (x 64 tokens) | logits, one [B, 64, 256] float32 tensor | peak above the resting process during one step |");
        Console.WriteLine("|---|---|---|");
        foreach (int batch in new[] { 32, 64, 128 })
        {
            List<DistillationBatch<TokenBatch>> data = Workloads.RandomBatches(1, batch);
            var trainer = new DistillationTrainer<TokenBatch>(teacher, new GptModel(Workloads.Student), Workloads.Objective(), Workloads.Options(1));
            trainer.Train(data); // warm-up: optimizer state and gradient buffers exist from here on
            double peak = Enumerable.Range(0, 3).Min(_ => NativeMemory.PeakAbove(() => trainer.Train(data)));
            Console.WriteLine($"| {batch} | {batch * 64.0 * 256 * 4 / (1 << 20):F0} MB | {peak:F0} MB |");
        }
        return 0;
    }
}
