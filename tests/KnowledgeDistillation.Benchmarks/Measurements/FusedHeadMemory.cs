using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// Peak native memory of one distillation loss forward + backward from the student's last hidden states and head:
/// the unfused composition (logits = h·Wᵀ as one [N, V] tensor, then <see cref="SoftTargetKLLoss"/> and the hard
/// cross-entropy) against <see cref="FusedLinearDistillationLoss"/>, at N = 8,192 rows, V = 32,768, D = 256, float32,
/// with the teacher given as logits (both paths hold those) or as hidden states and head.
/// </summary>
internal static class FusedHeadMemory
{
    public static int Run(bool quick)
    {
        if (!NativeMemory.CanMeasure("fused-head-memory")) return 1;
        NativeMemory.TrackLargeAllocations();
        int n = quick ? 1_024 : 8_192, v = quick ? 8_192 : 32_768, d = 256, dt = 384;
        manual_seed(5);
        Tensor hidden = randn(n, d).requires_grad_(), weight = (randn(v, d) * 0.05).requires_grad_();
        Tensor teacherHidden = randn(n, dt), teacherWeight = randn(v, dt) * 0.05;
        Tensor teacherLogits = teacherHidden.matmul(teacherWeight.t());
        Tensor labels = randint(0, v, [n]);
        var divergence = new SoftTargetKLLoss(2.0);
        var hard = new HardTargetCrossEntropyLoss();
        var fused = new FusedLinearDistillationLoss(new SoftTargetKLLoss(2.0), distillationWeight: 0.5, hardWeight: 0.5, chunkRows: 1_024);

        double Peak(Func<Tensor> loss)
        {
            void Once()
            {
                using var scope = NewDisposeScope();
                Tensor value = loss();
                IList<Tensor> grads = autograd.grad([value], [hidden, weight]);
                _ = grads[0].sum().item<float>() + grads[1].sum().item<float>();
            }
            Once();
            return Enumerable.Range(0, 2).Min(_ => NativeMemory.PeakAbove(Once));
        }

        double unfused = Peak(() =>
        {
            Tensor logits = hidden.matmul(weight.t());
            return divergence.forward(logits, teacherLogits, null, labels) * 0.5 + hard.forward(logits, labels, null) * 0.5;
        });
        double fusedLogits = Peak(() => fused.forward(hidden, weight, teacherLogits, labels));
        double fusedHead = Peak(() => fused.forward(hidden, weight, new TeacherHead(teacherHidden, teacherWeight), labels));
        double logitsMb = (double)n * v * 4 / (1 << 20);
        Console.WriteLine($"N = {n:N0}, V = {v:N0}, D = {d}, float32; one [N, V] tensor is {logitsMb:F0} MB. Peak native memory above the inputs, forward + backward (best of 2):");
        Console.WriteLine("| path | extra peak | fused / unfused |");
        Console.WriteLine("|---|---|---|");
        Console.WriteLine($"| unfused: h·Wᵀ, then SoftTargetKLLoss + cross-entropy | {unfused:F0} MB | 1.00 |");
        Console.WriteLine($"| fused, teacher logits given | {fusedLogits:F0} MB | {fusedLogits / unfused:F2} |");
        Console.WriteLine($"| fused, teacher as hidden states + head | {fusedHead:F0} MB | {fusedHead / unfused:F2} |");
        return 0;
    }
}
