using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Similarity-preserving knowledge distillation (SP; Tung and Mori, "Similarity-Preserving Knowledge Distillation",
/// ICCV 2019): the student's example-by-example similarity matrix should equal the teacher's.
/// <list type="bullet">
/// <item>G = F Fᵀ (<c>[N, N]</c>, F the flattened features); each row of G divided by its L2 norm (max(‖row‖, 10⁻¹²));</item>
/// <item>loss = ‖G̃_t − G̃_s‖_F² / N²,</item>
/// </list>
/// as in the paper and RepDistiller. The paper's weight γ (3000 on CIFAR-10) is the term's weight in an objective.
/// </summary>
/// <remarks>
/// With a mask, G is formed over the K kept examples (its rows normalised over the kept columns) and the sum divides
/// by K². See <see cref="RelationalLoss"/> for shapes and masking.
/// </remarks>
public sealed class SimilarityPreservingLoss : RelationalLoss
{
    /// <summary>Creates the loss.</summary>
    public SimilarityPreservingLoss() : base(nameof(SimilarityPreservingLoss))
    {
    }

    /// <inheritdoc />
    protected override Tensor Relation(Tensor student, Tensor teacher, Tensor weight)
    {
        Tensor pairs = weight.unsqueeze(1) * weight.unsqueeze(0);
        Tensor difference = Normalized(teacher, pairs) - Normalized(student, pairs);
        return difference.square().sum() / weight.sum().square().clamp_min(1);
    }

    private static Tensor Normalized(Tensor f, Tensor pairs)
    {
        Tensor gram = f.matmul(f.t()) * pairs;
        return gram / gram.square().sum(1, keepdim: true).clamp_min(1e-24).sqrt();
    }
}
