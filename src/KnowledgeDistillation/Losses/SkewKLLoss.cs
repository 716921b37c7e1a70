using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// DistiLLM's α-skew KL (Ko et al. 2024): T² · mean over rows of KL(p_t ‖ α·p_t + (1 − α)·p_s), the forward KL against
/// a mixture that keeps some of the teacher's mass wherever the student has none, so the divergence and its gradient
/// stay bounded (by −log α) early in training. α = 0 is the forward KL; DistiLLM uses α = 0.1.
/// </summary>
/// <remarks>
/// The mixture's log-probability is logsumexp(log α + log p_t, log(1 − α) + log p_s), never the log of a sum of
/// probabilities. With <c>reverse: true</c> this is the α-skew reverse KL, KL(p_s ‖ (1 − α)·p_t + α·p_s), reverse KL at
/// α = 0. Conventions as in <see cref="LogitDistillationLoss"/>; the default temperature is 1.
/// </remarks>
public sealed class SkewKLLoss : LogitDistillationLoss
{
    /// <summary>Creates the loss.</summary>
    /// <param name="alpha">α in [0, 1): the share of the divergence's own first argument in the mixture.</param>
    /// <param name="reverse">The skew reverse KL, KL(p_s ‖ (1 − α)p_t + αp_s), instead of the skew forward KL.</param>
    /// <param name="temperature">T; finite and &gt; 0.</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (default true; a no-op at T = 1).</param>
    /// <param name="ignoreIndex">Label value marking rows to drop when labels are passed (default -100).</param>
    public SkewKLLoss(double alpha = 0.1, bool reverse = false, double temperature = 1.0, bool scaleByTemperatureSquared = true, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(SkewKLLoss), temperature, scaleByTemperatureSquared, ignoreIndex)
    {
        Alpha = RequireMixture(alpha, nameof(alpha), oneAllowed: false);
        Reverse = reverse;
    }

    /// <summary>α in [0, 1) when a call does not give its own (a schedule passes each step's as the call's <c>mixture</c>).</summary>
    public double Alpha { get; }

    /// <summary>Whether this is the skew reverse KL.</summary>
    public bool Reverse { get; }

    /// <inheritdoc />
    protected override double DefaultMixture => Alpha;

    /// <inheritdoc />
    protected override bool MixtureMayBeOne => false;

    /// <inheritdoc />
    protected override Tensor RowDivergence(Tensor studentLogProbs, Tensor teacherLogProbs, RowArguments arguments)
    {
        (Tensor first, Tensor second) = Reverse ? (studentLogProbs, teacherLogProbs) : (teacherLogProbs, studentLogProbs);
        double alpha = arguments.Mixture;
        if (alpha == 0) return KullbackLeibler(first, second);
        Tensor mixture = stack([first + Math.Log(alpha), second + Math.Log(1 - alpha)]).logsumexp(0);
        return KullbackLeibler(first, mixture);
    }
}
