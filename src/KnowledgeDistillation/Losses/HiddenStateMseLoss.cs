using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Hidden-state MSE: mean over kept rows and the D teacher features of (W·h_s + b − h_t)², as TinyBERT's intermediate-layer loss (W, b only when widths differ).
/// </summary>
/// <remarks>
/// Every row has the same width, so this is the mean squared error over the elements of the kept rows —
/// PyTorch's <c>mse_loss</c> restricted to them. Masking, projection and precision as in <see cref="HiddenStateLoss"/>.
/// </remarks>
public sealed class HiddenStateMseLoss : HiddenStateLoss
{
    /// <summary>Creates the loss; pass both widths to learn a projection when they differ.</summary>
    /// <param name="studentWidth">The student's hidden width.</param>
    /// <param name="teacherWidth">The teacher's hidden width.</param>
    public HiddenStateMseLoss(long? studentWidth = null, long? teacherWidth = null)
        : base(nameof(HiddenStateMseLoss), studentWidth, teacherWidth)
    {
    }

    /// <inheritdoc />
    protected override Tensor RowLoss(Tensor student, Tensor teacher) => (student - teacher).square().mean([-1]);
}
