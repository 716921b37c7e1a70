using System.Diagnostics;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// Achieved FLOP/s of a distillation step on the TinyGpt teacher/student (teacher forward + student forward and
/// backward, counted as 1× + 3× the forward multiply-adds ×2) against a 1024×1024 float32 matmul in the same process.
/// </summary>
internal static class Throughput
{
    public static int Run()
    {
        double matmul = MatmulFlops(1024);
        foreach (int batch in new[] { 32, 128 })
        {
            manual_seed(1);
            var trainer = new DistillationTrainer<TokenBatch>(new GptModel(Workloads.Teacher), new GptModel(Workloads.Student), Workloads.Objective(), Workloads.Options(10));
            List<DistillationBatch<TokenBatch>> batches = Workloads.RandomBatches(10, batch);
            trainer.Train(batches); // warm-up
            var timer = Stopwatch.StartNew();
            const int repeats = 3;
            for (int i = 0; i < repeats; i++) trainer.Train(batches);
            double stepSeconds = timer.Elapsed.TotalSeconds / (10 * repeats);
            double tokens = batch * (double)Workloads.Context;
            double flops = tokens * (Workloads.ForwardFlopsPerToken(Workloads.Teacher) + 3 * Workloads.ForwardFlopsPerToken(Workloads.Student));
            Console.WriteLine($"batch {batch} x {Workloads.Context}: step {stepSeconds * 1000:F1} ms, {flops / 1e9:F2} GFLOP per step, {flops / stepSeconds / 1e9:F1} GFLOP/s " +
                $"= {flops / stepSeconds / matmul:P0} of the matmul's {matmul / 1e9:F1} GFLOP/s; {tokens / stepSeconds:N0} tokens/s");
        }
        return 0;
    }

    private static double MatmulFlops(int n)
    {
        using var scope = NewDisposeScope();
        Tensor a = randn(n, n), b = randn(n, n);
        for (int i = 0; i < 3; i++) a.matmul(b).Dispose();
        const int repeats = 20;
        var timer = Stopwatch.StartNew();
        for (int i = 0; i < repeats; i++) a.matmul(b).Dispose();
        return repeats * 2.0 * n * n * n / timer.Elapsed.TotalSeconds;
    }
}
