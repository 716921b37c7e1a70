using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>Which rows the losses keep, as a count you can use for your own normalisation.</summary>
public static class Rows
{
    /// <summary>
    /// The number of rows a loss keeps for this mask and these labels (an int64 scalar on the inputs' device; no host
    /// read): rows where the mask is true/non-zero and the label is not <paramref name="ignoreIndex"/>. Sum it over the
    /// micro-batches of a step and divide <see cref="RowReduction.Sum"/> losses by it for TRL's <c>num_items_in_batch</c> normalisation.
    /// </summary>
    /// <param name="rowShape">The inputs' shape without the last dimension: <c>[N]</c> or <c>[B, S]</c>.</param>
    /// <param name="mask">Optional rows to keep.</param>
    /// <param name="labels">Optional labels.</param>
    /// <param name="ignoreIndex">The label that drops a row.</param>
    /// <exception cref="ArgumentException">The mask or the labels are not shaped <paramref name="rowShape"/>.</exception>
    public static Tensor Kept(long[] rowShape, Tensor? mask = null, Tensor? labels = null, long ignoreIndex = Labels.IgnoreIndex)
    {
        ArgumentNullException.ThrowIfNull(rowShape);
        Device device = mask?.device ?? labels?.device ?? CPU;
        using var scope = NewDisposeScope();
        Tensor? keep = RowMask.Resolve(rowShape, device, mask, labels, ignoreIndex);
        Tensor count = keep is null ? tensor(rowShape.Aggregate(1L, (a, b) => a * b), device: device) : keep.sum();
        return count.MoveToOuterDisposeScope();
    }
}
