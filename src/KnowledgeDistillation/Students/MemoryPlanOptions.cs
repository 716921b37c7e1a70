using static TorchSharp.torch;

namespace KnowledgeDistillation.Students;

/// <summary>The settings of a run that <see cref="MemoryPlan.Estimate"/> cannot read from the models themselves.</summary>
public sealed record MemoryPlanOptions
{
    /// <summary>The teacher's precision in the run (the trainer's <c>TeacherPrecision</c>); null: its parameters' own.</summary>
    public ScalarType? TeacherPrecision { get; init; }

    /// <summary>
    /// The soft-target temperature. At T ≠ 1 both sides' logits are divided by T first: two more <c>[rows, V]</c>
    /// tensors in the loss.
    /// </summary>
    public double Temperature { get; init; } = 2.0;

    /// <summary>
    /// The soft-target loss's <c>MaxChunkElements</c>: above it the loss runs in row chunks of this many logits and
    /// holds their gradient instead of whole-input softmaxes. Default: the loss's own default.
    /// </summary>
    public long LossChunkElements { get; init; } = 1L << 22;

    /// <summary>
    /// Rows per chunk when the loss is a <c>FusedLinearDistillationLoss</c> over the student's last hidden states and head
    /// weight (a hand-written loop; the trainer's objective does not use it): the student's <c>[rows, V]</c> logits are then
    /// never made whole. Null: the logits are made and the loss reads them.
    /// </summary>
    public int? FusedHeadChunkRows { get; init; }

    /// <summary>Whether batches carry an attention mask (the reference models then build a <c>[B, 1, S, S]</c> additive mask).</summary>
    public bool AttentionMask { get; init; } = true;
}
