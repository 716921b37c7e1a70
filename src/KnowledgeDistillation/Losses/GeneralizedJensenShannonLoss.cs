using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Generalised Jensen-Shannon divergence (Agarwal et al. 2024, GKD): β·KL(p_t ‖ m) + (1 − β)·KL(p_s ‖ m) with
/// m = β·p_t + (1 − β)·p_s; exactly forward KL(p_t ‖ p_s) at β = 0 and reverse KL(p_s ‖ p_t) at β = 1.
/// </summary>
/// <remarks>
/// <para>
/// For 0 &lt; β &lt; 1 the mixture's log-probability is computed as logsumexp(log β + log p_t, log(1 − β) + log p_s),
/// never as the log of a sum of probabilities, so it stays exact where probabilities underflow. At β = 0 and
/// β = 1 the mixture formula would collapse to 0; there the loss is the forward and the reverse KL computed
/// directly — the convention of TRL's GKD trainer, so a GKD recipe ports with the same β.
/// </para>
/// <para>
/// With <c>normalize: true</c> the divergence is divided by β(1 − β). It then tends to forward KL as β → 0 and to
/// reverse KL as β → 1, so the loss is continuous in β over [0, 1] (useful when β follows a schedule).
/// </para>
/// Temperature, T², masking and precision follow <see cref="LogitDistillationLoss"/>; the default temperature is 1.
/// </remarks>
public sealed class GeneralizedJensenShannonLoss : LogitDistillationLoss
{
    /// <summary>Creates the loss.</summary>
    /// <param name="beta">β in [0, 1]: the teacher's weight in the mixture (0 = forward KL, 1 = reverse KL).</param>
    /// <param name="temperature">T; finite and &gt; 0.</param>
    /// <param name="normalize">Divide by β(1 − β) so the loss is continuous in β (default false: GKD/TRL values).</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (default true; a no-op at T = 1).</param>
    /// <param name="ignoreIndex">Label value marking rows to drop when labels are passed (default -100).</param>
    public GeneralizedJensenShannonLoss(double beta = 0.5, double temperature = 1.0, bool normalize = false, bool scaleByTemperatureSquared = true, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(GeneralizedJensenShannonLoss), temperature, scaleByTemperatureSquared, ignoreIndex)
    {
        Beta = RequireMixture(beta, nameof(beta), oneAllowed: true);
        Normalize = normalize;
    }

    /// <summary>β in [0, 1] when a call does not give its own (a schedule passes each step's as the call's <c>mixture</c>).</summary>
    public double Beta { get; }

    /// <summary>Whether the divergence is divided by β(1 − β).</summary>
    public bool Normalize { get; }

    /// <inheritdoc />
    protected override double DefaultMixture => Beta;

    /// <inheritdoc />
    protected override Tensor RowDivergence(Tensor studentLogProbs, Tensor teacherLogProbs, RowArguments arguments)
    {
        double beta = arguments.Mixture;
        if (beta == 0) return KullbackLeibler(teacherLogProbs, studentLogProbs);
        if (beta == 1) return KullbackLeibler(studentLogProbs, teacherLogProbs);

        Tensor mixture = stack([teacherLogProbs + Math.Log(beta), studentLogProbs + Math.Log(1 - beta)]).logsumexp(0);
        Tensor divergence = KullbackLeibler(teacherLogProbs, mixture) * beta + KullbackLeibler(studentLogProbs, mixture) * (1 - beta);
        return Normalize ? divergence / (beta * (1 - beta)) : divergence;
    }
}
