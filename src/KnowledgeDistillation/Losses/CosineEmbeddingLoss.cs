using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Hidden-state cosine loss: mean over kept rows of 1 − cos(W·h_s + b, h_t), as DistilBERT applies to the last hidden states (W, b only when widths differ).
/// </summary>
/// <remarks>
/// cos(x, y) = x·y / (max(‖x‖, ε)·max(‖y‖, ε)) with ε = 1e-8, so a zero vector has cosine 0 (loss 1) rather than NaN.
/// The loss lies in [0, 2]. Masking, projection and precision as in <see cref="HiddenStateLoss"/>.
/// </remarks>
public sealed class CosineEmbeddingLoss : HiddenStateLoss
{
    private const double Epsilon = 1e-8;

    /// <summary>Creates the loss; pass both widths to learn a projection when they differ.</summary>
    /// <param name="studentWidth">The student's hidden width.</param>
    /// <param name="teacherWidth">The teacher's hidden width.</param>
    public CosineEmbeddingLoss(long? studentWidth = null, long? teacherWidth = null)
        : base(nameof(CosineEmbeddingLoss), studentWidth, teacherWidth)
    {
    }

    /// <inheritdoc />
    protected override Tensor RowLoss(Tensor student, Tensor teacher)
    {
        Tensor dot = (student * teacher).sum(-1);
        Tensor norms = student.norm(-1).clamp_min(Epsilon) * teacher.norm(-1).clamp_min(Epsilon);
        return 1 - dot / norms;
    }
}
