using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Hard-target loss: mean over kept rows of −[(1 − ε)·log p_s,y + (ε / C)·Σ_c log p_s,c], cross-entropy of the student against the true labels with label smoothing ε.
/// </summary>
/// <remarks>
/// Logits are <c>[N, C]</c> or <c>[B, S, C]</c> with labels <c>[N]</c> or <c>[B, S]</c>. Rows whose label is
/// <see cref="IgnoreIndex"/>, or that an optional mask drops, do not count; with none kept the loss is 0 with zero
/// gradient (PyTorch's mean would be NaN). Classes whose logit is -inf (a masked vocabulary entry) are left out of
/// the smoothing average, so ε spreads over the classes that can occur; with no -inf logits this is exactly
/// PyTorch's <c>cross_entropy(..., label_smoothing: ε)</c>. Math in float32 for half-precision inputs. Labels on the
/// CPU are range-checked; on a GPU that check would cost a device-to-host copy, so it is skipped there.
/// </remarks>
public sealed class HardTargetCrossEntropyLoss : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Creates the loss.</summary>
    /// <param name="ignoreIndex">Label value marking rows to drop (default -100).</param>
    /// <param name="labelSmoothing">ε in [0, 1].</param>
    public HardTargetCrossEntropyLoss(long ignoreIndex = Labels.IgnoreIndex, double labelSmoothing = 0)
        : base(nameof(HardTargetCrossEntropyLoss))
    {
        IgnoreIndex = ignoreIndex;
        LabelSmoothing = LossInputs.RequireLabelSmoothing(labelSmoothing, nameof(labelSmoothing));
    }

    /// <summary>Rows with this label are dropped.</summary>
    public long IgnoreIndex { get; }

    /// <summary>ε.</summary>
    public double LabelSmoothing { get; }

    /// <summary>How per-row losses become the loss (default: mean over kept rows).</summary>
    public RowReduction Reduction { get; init; } = RowReduction.Mean;

    /// <summary>The loss over the rows whose label is not <see cref="IgnoreIndex"/>.</summary>
    /// <param name="studentLogits">Logits, <c>[N, C]</c> or <c>[B, S, C]</c>.</param>
    /// <param name="labels">Class indices, <c>[N]</c> or <c>[B, S]</c>.</param>
    public override Tensor forward(Tensor studentLogits, Tensor labels) => forward(studentLogits, labels, null);

    /// <summary>The loss over the rows the mask keeps and whose label is not <see cref="IgnoreIndex"/>.</summary>
    /// <param name="studentLogits">Logits, <c>[N, C]</c> or <c>[B, S, C]</c>.</param>
    /// <param name="labels">Class indices, <c>[N]</c> or <c>[B, S]</c>.</param>
    /// <param name="mask">Optional rows to keep: bool (or 0/1 integer) of the labels' shape.</param>
    public Tensor forward(Tensor studentLogits, Tensor labels, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(studentLogits);
        ArgumentNullException.ThrowIfNull(labels);
        LossInputs.RequireFloating(studentLogits, nameof(studentLogits));
        LossInputs.RequireRank(studentLogits, nameof(studentLogits), 2, 3, "logits of shape [N, C] or [B, S, C]");

        using var scope = NewDisposeScope();
        long classes = studentLogits.shape[^1];
        Tensor keep = RowMask.Resolve(studentLogits.shape[..^1], studentLogits.device, mask, labels, IgnoreIndex)!;
        // Any integer label type is accepted: libtorch's NLL and gather need int64 indices.
        Tensor safeLabels = where(keep, labels.to(ScalarType.Int64, studentLogits.device), zeros(1, dtype: ScalarType.Int64, device: studentLogits.device));
        if (labels.device_type == DeviceType.CPU) LossInputs.RequireLabelsInRange(labels, keep, classes, IgnoreIndex);

        ScalarType type = LossInputs.ComputeType(studentLogits);
        Tensor logits = RowMask.ZeroDropped(studentLogits.to(type), RowMask.ForZeroing(keep), 1);
        if (LabelSmoothing == 0)
        {
            // libtorch's fused log-softmax + NLL: fewer passes over [rows, C] than log_softmax + gather, forward and backward.
            Tensor nll = nn.functional.cross_entropy(logits.reshape(-1, classes), safeLabels.reshape(-1), reduction: nn.Reduction.None);
            return RowMask.Reduce(nll.reshape(keep.shape), keep, Reduction).MoveToOuterDisposeScope();
        }
        Tensor logProbs = logits.log_softmax(-1);
        Tensor nllPerRow = -logProbs.gather(-1, safeLabels.unsqueeze(-1)).squeeze(-1);
        Tensor available = logProbs.isfinite();
        Tensor meanLogProb = where(available, logProbs, zeros(1, dtype: type, device: logProbs.device)).sum(-1)
            / available.sum(-1).to(type).clamp_min(1);
        Tensor perRow = nllPerRow * (1 - LabelSmoothing) - meanLogProb * LabelSmoothing;
        return RowMask.Reduce(perRow, keep, Reduction).MoveToOuterDisposeScope();
    }
}
