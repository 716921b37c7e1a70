using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Total variation distance: T² · mean over rows of ½ Σ_c |p_teacher,c − p_student,c| between the softened
/// distributions (Wen et al. 2023, f-divergence distillation; one of TRL's and DistiLLM's divergences). Symmetric and
/// bounded by 1 per row, so a few confidently wrong rows cannot dominate a batch.
/// </summary>
/// <remarks>
/// |x| has no derivative at 0; where the two probabilities are exactly equal the gradient taken is 0. Conventions as in
/// <see cref="LogitDistillationLoss"/>; the default temperature is 1.
/// </remarks>
public sealed class TotalVariationLoss : LogitDistillationLoss
{
    /// <summary>Creates the loss.</summary>
    /// <param name="temperature">T; finite and &gt; 0.</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (default true; a no-op at T = 1).</param>
    /// <param name="ignoreIndex">Label value marking rows to drop when labels are passed (default -100).</param>
    public TotalVariationLoss(double temperature = 1.0, bool scaleByTemperatureSquared = true, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(TotalVariationLoss), temperature, scaleByTemperatureSquared, ignoreIndex)
    {
    }

    /// <inheritdoc />
    protected override Tensor RowDivergence(Tensor studentLogProbs, Tensor teacherLogProbs, RowArguments arguments) =>
        (teacherLogProbs.exp() - studentLogProbs.exp()).abs().sum(-1).mul(0.5);
}
