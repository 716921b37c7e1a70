using KnowledgeDistillation.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Soft-target KL against a teacher stored sparsely (<see cref="TopKTargets"/>, as a teacher cache holds it): the
/// teacher's k most probable classes keep their own probabilities and every other class is merged into one tail
/// bucket, in the teacher and in the student alike. Per row, at the cache's temperature T:
/// Σ_{i ∈ top-k} p_i (log p_i − log q_i) + p_tail (log p_tail − log q_tail), with q = softmax(z_student / T) and
/// q_tail = Σ_{j ∉ top-k} q_j; times T² when scaled. With k = C it is <see cref="SoftTargetKLLoss"/> exactly; with
/// k &lt; C it is the KL between the two distributions coarsened to k + 1 outcomes, which can only be smaller.
/// Rows, masks, labels and precision follow <see cref="LogitDistillationLoss"/>.
/// </summary>
public sealed class TopKSoftTargetLoss : nn.Module<Tensor, TopKTargets, Tensor>
{
    /// <summary>Creates the loss.</summary>
    /// <param name="scaleByTemperatureSquared">Multiply by T², T being the targets' temperature (default true).</param>
    /// <param name="ignoreIndex">Label value marking rows to drop when labels are passed (default -100).</param>
    public TopKSoftTargetLoss(bool scaleByTemperatureSquared = true, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(TopKSoftTargetLoss))
    {
        ScaleByTemperatureSquared = scaleByTemperatureSquared;
        IgnoreIndex = ignoreIndex;
    }

    /// <summary>Whether the loss is multiplied by T².</summary>
    public bool ScaleByTemperatureSquared { get; set; }

    /// <summary>How per-row divergences become the loss (default: mean over kept rows).</summary>
    public RowReduction Reduction { get; set; } = RowReduction.Mean;

    /// <summary>Rows whose label equals this value are dropped.</summary>
    public long IgnoreIndex { get; }

    /// <summary>The loss over all rows.</summary>
    public override Tensor forward(Tensor studentLogits, TopKTargets teacher) => forward(studentLogits, teacher, null, null);

    /// <summary>The loss over the kept rows.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>.</param>
    /// <param name="teacher">The teacher's top-k targets, <c>[..., k + 1]</c> and <c>[..., k]</c> with the logits' leading shape.</param>
    /// <param name="mask">Optional rows to keep, <c>[N]</c> or <c>[B, S]</c>.</param>
    /// <param name="labels">Optional labels; rows equal to <see cref="IgnoreIndex"/> are dropped.</param>
    public Tensor forward(Tensor studentLogits, TopKTargets teacher, Tensor? mask, Tensor? labels = null)
    {
        ArgumentNullException.ThrowIfNull(studentLogits);
        ArgumentNullException.ThrowIfNull(teacher);
        LossInputs.RequireFloating(studentLogits, nameof(studentLogits));
        LossInputs.RequireRank(studentLogits, nameof(studentLogits), 2, 3, "logits of shape [N, C] or [B, S, C]");
        if (!teacher.Indices.shape[..^1].SequenceEqual(studentLogits.shape[..^1]) || teacher.K > studentLogits.shape[^1])
        {
            throw new ArgumentException(
                $"teacher targets must cover the student's rows with k <= {studentLogits.shape[^1]} classes: student logits {Shapes.Describe(studentLogits.shape)}, " +
                $"teacher indices {Shapes.Describe(teacher.Indices.shape)}.", nameof(teacher));
        }

        LossInputs.RequireSameDevice(studentLogits, nameof(studentLogits), teacher.Indices, nameof(teacher));
        LossInputs.RequireSameDevice(studentLogits, nameof(studentLogits), teacher.Probabilities, nameof(teacher));
        if (teacher.Indices.numel() > 0)
        {
            // Checked on every device (one host read): an index past the vocabulary would be a native error or, on a GPU, an assertion.
            using var check = NewDisposeScope();
            long[] range = stack([teacher.Indices.min().to(ScalarType.Int64), teacher.Indices.max().to(ScalarType.Int64)]).cpu().data<long>().ToArray();
            if (range[0] < 0 || range[1] >= studentLogits.shape[^1])
            {
                throw new ArgumentException($"teacher indices must be classes in [0, {studentLogits.shape[^1]}); found {(range[0] < 0 ? range[0] : range[1])}.", nameof(teacher));
            }
        }

        using var scope = NewDisposeScope();
        ScalarType type = LossInputs.ComputeType(studentLogits);
        Tensor? keep = RowMask.Resolve(studentLogits.shape[..^1], studentLogits.device, mask, labels, IgnoreIndex);
        double t = teacher.Temperature, lowest = finfo(type).min;
        Tensor indices = teacher.Indices.to(ScalarType.Int64);

        Tensor? zeroing = RowMask.ForZeroing(keep);
        Tensor scaled = RowMask.ZeroDropped(studentLogits.to(type), zeroing, 1) / t;
        Tensor logPartition = scaled.logsumexp(-1, keepdim: true);
        Tensor logTop = scaled.gather(-1, indices) - logPartition;
        Tensor logTail = scaled.scatter(-1, indices, full(1, double.NegativeInfinity, type, scaled.device).expand_as(indices)).logsumexp(-1, keepdim: true) - logPartition;
        Tensor logQ = cat([logTop, logTail], -1).clamp_min(lowest);

        Tensor p = RowMask.ZeroDropped(teacher.Probabilities.to(studentLogits.device).to(type), zeroing, 1);
        if (teacher.K == studentLogits.shape[^1])
        {
            // Every class is kept: the tail bucket is empty in both distributions (and log q_tail is -inf).
            p = p.narrow(-1, 0, teacher.K);
            logQ = logQ.narrow(-1, 0, teacher.K);
        }
        Tensor perRow = p.mul(p.log().clamp_min(lowest) - logQ).sum(-1); // p = 0 gives 0 · finite = 0
        Tensor loss = RowMask.Reduce(perRow, keep, Reduction);
        if (ScaleByTemperatureSquared) loss = loss * (t * t);
        return loss.MoveToOuterDisposeScope();
    }
}
