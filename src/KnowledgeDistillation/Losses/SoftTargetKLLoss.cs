using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Soft-target loss: T² · mean over rows of KL(p_teacher^T ‖ p_student^T), with p^T = softmax(z / T) (Hinton et al. 2015).
/// </summary>
/// <remarks>
/// Per row: Σ_c p_t,c (log p_t,c − log p_s,c). The T² factor (on by default) keeps the gradient magnitude roughly
/// independent of T, so the weights of a soft and a hard term mean the same at any temperature; turn it off to
/// reproduce recipes that leave it out (TextBrewer, TinyBERT). See <see cref="LogitDistillationLoss"/> for shapes,
/// masking, precision and the teacher's detachment, and docs/losses.md for how other toolkits' settings map here.
/// </remarks>
public sealed class SoftTargetKLLoss : LogitDistillationLoss
{
    /// <summary>Creates the loss.</summary>
    /// <param name="temperature">T; finite and &gt; 0.</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (default true).</param>
    /// <param name="ignoreIndex">Label value marking rows to drop when labels are passed (default -100).</param>
    public SoftTargetKLLoss(double temperature = 2.0, bool scaleByTemperatureSquared = true, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(SoftTargetKLLoss), temperature, scaleByTemperatureSquared, ignoreIndex)
    {
    }

    /// <inheritdoc />
    protected override Tensor RowDivergence(Tensor studentLogProbs, Tensor teacherLogProbs, RowArguments arguments) =>
        KullbackLeibler(teacherLogProbs, studentLogProbs);
}
