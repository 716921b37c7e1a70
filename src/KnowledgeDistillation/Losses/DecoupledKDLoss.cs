using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Decoupled knowledge distillation (DKD; Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022): the soft-target
/// KL split at the true class y into a target-class term and a non-target-class term, weighted separately.
/// Per row, with p = softmax(z / T) for each model:
/// <list type="bullet">
/// <item>TCKD = KL(b_t ‖ b_s) over the binary distribution b = [p_y, 1 − p_y] (how sure the model is of the true class);</item>
/// <item>NCKD = KL(p̂_t ‖ p̂_s) over the non-target classes, p̂_c = p_c / (1 − p_y) for c ≠ y (how it ranks the wrong ones);</item>
/// <item>loss = T² · (α · TCKD + β · NCKD), averaged over kept rows.</item>
/// </list>
/// Classic KD is TCKD + (1 − p_t,y) · NCKD, so DKD with α = 1 and β = 1 − p_t,y would recover it; the paper's point
/// is that β is better set independently and large (8 on CIFAR-100, the default here, with T = 4).
/// </summary>
/// <remarks>
/// The non-target distribution excludes the true class exactly (a −∞ logit) rather than by mdistiller's subtraction of
/// 1000 from its logit; 1 − p_y is computed as a log-sum-exp over the other classes, so it stays accurate when p_y is
/// close to 1. mdistiller ramps the DKD term in over its first 20 epochs (<c>min(epoch / 20, 1)</c>); here that is the
/// term's weight schedule (e.g. <c>Schedule.Linear(0, 1, warmupSteps)</c> then constant). Temperature, the T² switch
/// (on by default: the paper's loss carries T²), reduction, standardisation, masks, ignore-index and chunking are
/// <see cref="LogitDistillationLoss"/>'s; labels are required.
/// </remarks>
public sealed class DecoupledKDLoss : LogitDistillationLoss
{
    /// <summary>Creates the loss with mdistiller's CIFAR-100 defaults (α 1, β 8, T 4).</summary>
    /// <param name="alpha">α, the weight of the target-class term; finite and ≥ 0.</param>
    /// <param name="beta">β, the weight of the non-target-class term; finite and ≥ 0.</param>
    /// <param name="temperature">T; finite and &gt; 0.</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (default true, as the paper).</param>
    /// <param name="ignoreIndex">Label value marking rows to drop (default −100).</param>
    public DecoupledKDLoss(double alpha = 1.0, double beta = 8.0, double temperature = 4.0, bool scaleByTemperatureSquared = true, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(DecoupledKDLoss), temperature, scaleByTemperatureSquared, ignoreIndex)
    {
        Alpha = LossInputs.RequireNonNegativeWeight(alpha, nameof(alpha));
        Beta = LossInputs.RequireNonNegativeWeight(beta, nameof(beta));
    }

    /// <summary>α, the target-class weight.</summary>
    public double Alpha { get; }

    /// <summary>β, the non-target-class weight.</summary>
    public double Beta { get; }

    /// <summary>The loss over rows whose label is not <see cref="LogitDistillationLoss.IgnoreIndex"/>, at <see cref="LogitDistillationLoss.Temperature"/>.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>, C ≥ 2.</param>
    /// <param name="teacherLogits">Teacher logits of the same shape (detached inside).</param>
    /// <param name="labels">True classes, <c>[N]</c> or <c>[B, S]</c>.</param>
    public Tensor forward(Tensor studentLogits, Tensor teacherLogits, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        return forward(studentLogits, teacherLogits, null, labels);
    }

    /// <inheritdoc />
    protected override bool RequiresLabels => true;

    /// <inheritdoc />
    protected override Tensor RowDivergence(Tensor studentLogProbs, Tensor teacherLogProbs, RowArguments arguments)
    {
        long classes = studentLogProbs.shape[^1];
        if (classes < 2) throw new ArgumentException($"DKD splits the classes into the target and the rest, so it needs at least 2 classes; studentLogits has {classes}.", "studentLogits");
        Tensor target = arguments.Labels!.unsqueeze(-1);
        Tensor isTarget = zeros_like(studentLogProbs, dtype: ScalarType.Bool).scatter_(-1, target, ones_like(target, dtype: ScalarType.Bool));
        return Alpha * TargetClassDivergence(teacherLogProbs, studentLogProbs, target, isTarget) + Beta * NonTargetDivergence(teacherLogProbs, studentLogProbs, isTarget);
    }

    /// <summary>KL([p_t,y, 1 − p_t,y] ‖ [p_s,y, 1 − p_s,y]) per row, from log p_y and log(1 − p_y) = logsumexp of log p over c ≠ y.</summary>
    private static Tensor TargetClassDivergence(Tensor teacher, Tensor student, Tensor target, Tensor isTarget)
    {
        (Tensor teacherTarget, Tensor teacherRest) = BinaryLogProbabilities(teacher, target, isTarget);
        (Tensor studentTarget, Tensor studentRest) = BinaryLogProbabilities(student, target, isTarget);
        return teacherTarget.exp() * (teacherTarget - studentTarget) + teacherRest.exp() * (teacherRest - studentRest);
    }

    private static (Tensor Target, Tensor Others) BinaryLogProbabilities(Tensor logProbs, Tensor target, Tensor isTarget)
    {
        double lowest = finfo(logProbs.dtype).min;
        Tensor rest = logProbs.masked_fill(isTarget, double.NegativeInfinity).logsumexp(-1);
        // Clamped so that a probability of exactly 0 contributes 0 · finite = 0, never 0 · ∞.
        return (logProbs.gather(-1, target).squeeze(-1).clamp_min(lowest), rest.clamp_min(lowest));
    }

    /// <summary>KL(p̂_t ‖ p̂_s) per row over the classes other than the target (the target's log-probability set to −∞ and the rest renormalised).</summary>
    private static Tensor NonTargetDivergence(Tensor teacher, Tensor student, Tensor isTarget)
    {
        double lowest = finfo(teacher.dtype).min;
        Tensor teacherLog = teacher.masked_fill(isTarget, double.NegativeInfinity).log_softmax(-1).clamp_min(lowest);
        Tensor studentLog = student.masked_fill(isTarget, double.NegativeInfinity).log_softmax(-1).clamp_min(lowest);
        return (teacherLog.exp() * (teacherLog - studentLog)).sum(-1);
    }
}
