using System.Diagnostics;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// The trainer's step against the same step written by hand, as pairs: each pair times one hand-written step and one
/// trainer step on the same batch back to back, in alternating order, so that the machine's drift — the noise that
/// makes BenchmarkDotNet's ratio on this shared 2-core machine ±5–10% — falls on both sides of a pair alike. The
/// trainer runs each step as a one-step <c>Train</c> call, so its figure also carries the start of a run (seeding, the
/// plan): an upper bound on the step's own cost. The claim is the median of the per-pair ratios with its interquartile
/// range. libtorch runs on one thread, which removes the contention between its two worker threads.
/// </summary>
internal static class StepOverhead
{
    private const int Batches = 10;

    public static int Run(int pairs)
    {
        torch.set_num_threads(1);
        manual_seed(1);
        var teacher = new GptModel(Workloads.Teacher);
        teacher.eval();
        foreach (Parameter p in teacher.parameters()) p.requires_grad_(false);
        manual_seed(2);
        var handStudent = new GptModel(Workloads.Student);
        manual_seed(2);
        var trainerStudent = new GptModel(Workloads.Student);
        using OptimizerHelper handOptimizer = optim.AdamW(handStudent.parameters(), Workloads.LearningRate, weight_decay: 0.01);
        using var trainer = new DistillationTrainer<TokenBatch>(teacher, trainerStudent, Workloads.Objective(), Workloads.Options(1));
        List<DistillationBatch<TokenBatch>> batches = Workloads.RandomBatches(Batches);

        static double Timed(Action step)
        {
            var clock = Stopwatch.StartNew();
            step();
            return clock.Elapsed.TotalMilliseconds;
        }

        handStudent.train();
        double Hand(DistillationBatch<TokenBatch> batch) => Timed(() => Workloads.HandWrittenStep(teacher, handStudent, handOptimizer, batch));

        double Trainer(DistillationBatch<TokenBatch> batch) => Timed(() => trainer.Train([batch]));

        for (int i = 0; i < 2 * Batches; i++) // warm-up: JIT, allocator, caches
        {
            Hand(batches[i % Batches]);
            Trainer(batches[i % Batches]);
        }
        var hand = new List<double>();
        var library = new List<double>();
        for (int pair = 0; pair < pairs; pair++)
        {
            DistillationBatch<TokenBatch> batch = batches[pair % Batches];
            if (pair % 2 == 0)
            {
                hand.Add(Hand(batch));
                library.Add(Trainer(batch));
            }
            else
            {
                library.Add(Trainer(batch));
                hand.Add(Hand(batch));
            }
        }
        double[] ratios = library.Zip(hand, (l, h) => l / h).Order().ToArray();
        Console.WriteLine($"pairs: {pairs}, libtorch threads: {torch.get_num_threads()}");
        Console.WriteLine($"hand-written step: median {Median(hand):F2} ms; trainer step: median {Median(library):F2} ms");
        Console.WriteLine($"trainer / hand, per pair: median {Quantile(ratios, 0.5):F4}, interquartile range {Quantile(ratios, 0.25):F4} to {Quantile(ratios, 0.75):F4}");
        return 0;
    }

    private static double Median(IEnumerable<double> values) => Quantile(values.Order().ToArray(), 0.5);

    private static double Quantile(double[] sorted, double q)
    {
        double position = q * (sorted.Length - 1);
        int low = (int)Math.Floor(position), high = (int)Math.Ceiling(position);
        return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
    }
}
