using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>Peak native memory of one soft-target KL forward + backward, naive composition vs ours, on <c>[4, 128, V]</c>.</summary>
internal static class LossMemory
{
    public static int Run()
    {
        if (!NativeMemory.CanMeasure("loss-memory")) return 1;
        NativeMemory.TrackLargeAllocations();
        Console.WriteLine("| V | logits (one [4, 128, V] float32 tensor) | naive composition | SoftTargetKLLoss | unchunked | ours / naive |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (int v in new[] { 256, 8_192, 32_768, 131_072 })
        {
            manual_seed(3);
            Tensor student = (randn(4, 128, v) * 3).requires_grad_(), teacher = randn(4, 128, v) * 3;
            var chunked = new SoftTargetKLLoss(Workloads.Temperature);
            var direct = new SoftTargetKLLoss(Workloads.Temperature) { MaxChunkElements = long.MaxValue };
            double Peak(Func<Tensor> loss)
            {
                void Once()
                {
                    using var scope = NewDisposeScope();
                    autograd.grad([loss()], [student])[0].sum().item<float>();
                }
                Once(); // first use allocates lazily-created state
                return Enumerable.Range(0, 3).Min(_ => NativeMemory.PeakAbove(Once));
            }
            double naive = Peak(() => LossKernelBenchmarks.Naive(student, teacher));
            double ours = Peak(() => chunked.forward(student, teacher));
            double unchunked = Peak(() => direct.forward(student, teacher));
            double tensorMb = 4 * 128 * (double)v * 4 / (1 << 20);
            Console.WriteLine($"| {v:N0} | {tensorMb:F1} MB | {naive:F1} MB | {ours:F1} MB | {unchunked:F1} MB | {ours / naive:F2} |");
            student.Dispose();
            teacher.Dispose();
        }
        return 0;
    }
}
