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
/// term's weight schedule (e.g. <c>Schedule.Linear(0, 1, warmupSteps)</c> then constant). Rows are dropped by the mask
/// and by labels equal to <see cref="IgnoreIndex"/>; math in float32 for half-precision inputs; the teacher is detached.
/// </remarks>
public sealed class DecoupledKDLoss : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    private double _temperature;

    /// <summary>Creates the loss with mdistiller's CIFAR-100 defaults (α 1, β 8, T 4).</summary>
    /// <param name="alpha">α, the weight of the target-class term; finite and ≥ 0.</param>
    /// <param name="beta">β, the weight of the non-target-class term; finite and ≥ 0.</param>
    /// <param name="temperature">T; finite and &gt; 0.</param>
    /// <param name="ignoreIndex">Label value marking rows to drop (default −100).</param>
    public DecoupledKDLoss(double alpha = 1.0, double beta = 8.0, double temperature = 4.0, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(DecoupledKDLoss))
    {
        Alpha = LossInputs.RequireNonNegativeWeight(alpha, nameof(alpha));
        Beta = LossInputs.RequireNonNegativeWeight(beta, nameof(beta));
        Temperature = temperature;
        IgnoreIndex = ignoreIndex;
    }

    /// <summary>α, the target-class weight.</summary>
    public double Alpha { get; }

    /// <summary>β, the non-target-class weight.</summary>
    public double Beta { get; }

    /// <summary>T; settable so a schedule can change it between steps.</summary>
    public double Temperature
    {
        get => _temperature;
        set => _temperature = Temperatures.Require(value, nameof(Temperature));
    }

    /// <summary>Standardise both models' logits per row before the temperature (<see cref="LogitStandardization"/>).</summary>
    public bool StandardizeLogits { get; set; }

    /// <summary>How per-row losses become the loss (default: mean over kept rows; mdistiller's sum / batch size is the same without dropped rows).</summary>
    public RowReduction Reduction { get; init; } = RowReduction.Mean;

    /// <summary>Rows with this label are dropped.</summary>
    public long IgnoreIndex { get; }

    /// <summary>The loss over rows whose label is not <see cref="IgnoreIndex"/>.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>, C ≥ 2.</param>
    /// <param name="teacherLogits">Teacher logits of the same shape (detached inside).</param>
    /// <param name="labels">True classes, <c>[N]</c> or <c>[B, S]</c>.</param>
    public override Tensor forward(Tensor studentLogits, Tensor teacherLogits, Tensor labels) => forward(studentLogits, teacherLogits, labels, null);

    /// <summary>The loss over the rows the mask keeps and whose label is not <see cref="IgnoreIndex"/>.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>, C ≥ 2.</param>
    /// <param name="teacherLogits">Teacher logits of the same shape (detached inside).</param>
    /// <param name="labels">True classes, <c>[N]</c> or <c>[B, S]</c>.</param>
    /// <param name="mask">Optional rows to keep, of the labels' shape.</param>
    public Tensor forward(Tensor studentLogits, Tensor teacherLogits, Tensor labels, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(studentLogits);
        ArgumentNullException.ThrowIfNull(teacherLogits);
        ArgumentNullException.ThrowIfNull(labels);
        LossInputs.RequireFloating(studentLogits, nameof(studentLogits));
        LossInputs.RequireFloating(teacherLogits, nameof(teacherLogits));
        LossInputs.RequireRank(studentLogits, nameof(studentLogits), 2, 3, "logits of shape [N, C] or [B, S, C]");
        LossInputs.RequireSameShape(studentLogits, nameof(studentLogits), teacherLogits, nameof(teacherLogits), "class count");
        LossInputs.RequireSameDevice(studentLogits, nameof(studentLogits), teacherLogits, nameof(teacherLogits));
        long classes = studentLogits.shape[^1];
        if (classes < 2) throw new ArgumentException($"DKD splits the classes into the target and the rest, so it needs at least 2 classes; studentLogits has {classes}.", nameof(studentLogits));

        using var scope = NewDisposeScope();
        Tensor keep = RowMask.Resolve(studentLogits.shape[..^1], studentLogits.device, mask, labels, IgnoreIndex)!;
        if (labels.device_type == DeviceType.CPU) LossInputs.RequireLabelsInRange(labels, keep, classes, IgnoreIndex);
        Tensor target = where(keep, labels.to(ScalarType.Int64, studentLogits.device), zeros(1, dtype: ScalarType.Int64, device: studentLogits.device)).unsqueeze(-1);
        Tensor isTarget = zeros_like(studentLogits, dtype: ScalarType.Bool).scatter_(-1, target, ones_like(target, dtype: ScalarType.Bool));

        ScalarType type = LossInputs.ComputeType(studentLogits);
        Tensor s = Scaled(RowMask.ZeroDropped(studentLogits.to(type), keep, 1));
        Tensor t = Scaled(RowMask.ZeroDropped(teacherLogits.detach().to(type), keep, 1));
        Tensor perRow = Alpha * TargetClassDivergence(t, s, target, isTarget) + Beta * NonTargetDivergence(t, s, isTarget);
        double square = Temperature * Temperature;
        return (RowMask.Reduce(perRow, keep, Reduction) * square).MoveToOuterDisposeScope();
    }

    private Tensor Scaled(Tensor logits) => (StandardizeLogits ? LogitStandardization.Apply(logits) : logits) / Temperature;

    /// <summary>KL([p_t,y, 1 − p_t,y] ‖ [p_s,y, 1 − p_s,y]) per row, from log p_y and log(1 − p_y) = logsumexp over c ≠ y − logsumexp over all.</summary>
    private static Tensor TargetClassDivergence(Tensor teacher, Tensor student, Tensor target, Tensor isTarget)
    {
        (Tensor teacherTarget, Tensor teacherRest) = BinaryLogProbabilities(teacher, target, isTarget);
        (Tensor studentTarget, Tensor studentRest) = BinaryLogProbabilities(student, target, isTarget);
        return teacherTarget.exp() * (teacherTarget - studentTarget) + teacherRest.exp() * (teacherRest - studentRest);
    }

    private static (Tensor Target, Tensor Others) BinaryLogProbabilities(Tensor scaled, Tensor target, Tensor isTarget)
    {
        double lowest = finfo(scaled.dtype).min;
        Tensor all = scaled.logsumexp(-1);
        Tensor rest = scaled.masked_fill(isTarget, double.NegativeInfinity).logsumexp(-1);
        // Clamped so that a probability of exactly 0 contributes 0 · finite = 0, never 0 · ∞.
        return ((scaled.gather(-1, target).squeeze(-1) - all).clamp_min(lowest), (rest - all).clamp_min(lowest));
    }

    /// <summary>KL(p̂_t ‖ p̂_s) per row over the classes other than the target (the target's logit set to −∞).</summary>
    private static Tensor NonTargetDivergence(Tensor teacher, Tensor student, Tensor isTarget)
    {
        double lowest = finfo(teacher.dtype).min;
        Tensor teacherLog = teacher.masked_fill(isTarget, double.NegativeInfinity).log_softmax(-1).clamp_min(lowest);
        Tensor studentLog = student.masked_fill(isTarget, double.NegativeInfinity).log_softmax(-1).clamp_min(lowest);
        return (teacherLog.exp() * (teacherLog - studentLog)).sum(-1);
    }
}
