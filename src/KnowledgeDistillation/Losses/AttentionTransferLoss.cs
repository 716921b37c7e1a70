using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Attention transfer (AT; Zagoruyko and Komodakis, "Paying More Attention to Attention", ICLR 2017): the student's
/// spatial attention map should match the teacher's. For a feature map A <c>[C, H, W]</c>, the attention map is
/// Q = vec(mean over channels of A^p), normalised to unit L2 norm (max(‖Q‖, 10⁻¹²)); the loss of an example is the mean
/// over the H·W positions of (Q_s − Q_t)², averaged over examples (p = 2 by default), as in RepDistiller. Channel
/// counts may differ. When the spatial sizes differ, the larger map is average-pooled to the smaller
/// (<c>adaptive_avg_pool2d</c>, as RepDistiller does). RepDistiller weights the term by β = 1000.
/// </summary>
public sealed class AttentionTransferLoss : FeatureMapLoss
{
    /// <summary>Creates the loss.</summary>
    /// <param name="power">p, the power of the activations averaged over channels; finite and &gt; 0.</param>
    public AttentionTransferLoss(double power = 2) : base(nameof(AttentionTransferLoss))
    {
        Power = double.IsFinite(power) && power > 0 ? power : throw new ArgumentOutOfRangeException(nameof(power), power, $"power must be finite and positive; got {power}.");
    }

    /// <summary>p.</summary>
    public double Power { get; }

    /// <inheritdoc />
    protected override Tensor PerExample(Tensor student, Tensor teacher)
    {
        long height = Math.Min(student.shape[2], teacher.shape[2]), width = Math.Min(student.shape[3], teacher.shape[3]);
        Tensor difference = Attention(Pooled(student, height, width)) - Attention(Pooled(teacher, height, width));
        return difference.square().mean([1]);
    }

    private static Tensor Pooled(Tensor map, long height, long width) =>
        map.shape[2] == height && map.shape[3] == width ? map : F.adaptive_avg_pool2d(map, [height, width]);

    private Tensor Attention(Tensor map)
    {
        Tensor q = (Power == 2 ? map.square() : map.pow(Power)).mean([1]).flatten(1);
        // max(‖q‖, ε) taken before the square root, so an all-zero map has a zero (not NaN) gradient.
        return q / q.square().sum(1, keepdim: true).clamp_min(1e-24).sqrt();
    }
}
