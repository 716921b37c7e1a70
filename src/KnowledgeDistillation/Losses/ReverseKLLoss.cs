using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Reverse KL: T² · mean over rows of KL(p_student^T ‖ p_teacher^T), the mode-seeking divergence used for language models (MiniLLM, GKD).
/// </summary>
/// <remarks>
/// Per row: Σ_c p_s,c (log p_s,c − log p_t,c). Where the teacher gives a class zero probability and the student
/// does not, the divergence is unbounded (a very large finite value), as the mathematics says. Conventions as in
/// <see cref="LogitDistillationLoss"/>; the default temperature is 1, as in the language-model literature.
/// </remarks>
public sealed class ReverseKLLoss : LogitDistillationLoss
{
    /// <summary>Creates the loss.</summary>
    /// <param name="temperature">T; finite and &gt; 0.</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (default true; a no-op at T = 1).</param>
    /// <param name="ignoreIndex">Label value marking rows to drop when labels are passed (default -100).</param>
    public ReverseKLLoss(double temperature = 1.0, bool scaleByTemperatureSquared = true, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(ReverseKLLoss), temperature, scaleByTemperatureSquared, ignoreIndex)
    {
    }

    /// <inheritdoc />
    protected override Tensor RowDivergence(Tensor studentLogProbs, Tensor teacherLogProbs, RowArguments arguments) =>
        KullbackLeibler(studentLogProbs, teacherLogProbs);
}
