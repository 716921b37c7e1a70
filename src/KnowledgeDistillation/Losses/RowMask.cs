using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Which rows a loss averages over. A row is one example of <c>[N, C]</c> inputs or one token of <c>[B, S, C]</c>
/// inputs. A row is kept when the optional <c>mask</c> is true (or non-zero) there AND the optional <c>labels</c>
/// are not the ignore index there. Losses are the mean over kept rows; with no kept row they are exactly 0 with
/// zero gradient (the mean divides by max(count, 1), and masked rows never reach the math as anything but zeros).
/// </summary>
internal static class RowMask
{
    /// <summary>
    /// The boolean keep-mask of shape <paramref name="rowShape"/>, or null when every row is kept.
    /// </summary>
    /// <param name="rowShape">The shape of the rows: the input's shape without its last dimension.</param>
    /// <param name="device">Where the inputs are.</param>
    /// <param name="mask">Optional rows to keep.</param>
    /// <param name="labels">Optional labels; rows equal to <paramref name="ignoreIndex"/> are dropped.</param>
    /// <param name="ignoreIndex">The label value that drops a row.</param>
    /// <param name="maskName">The mask's parameter name in the public method, for error messages.</param>
    public static Tensor? Resolve(long[] rowShape, Device device, Tensor? mask, Tensor? labels, long ignoreIndex, string maskName = "mask")
    {
        Tensor? keep = null;
        if (mask is not null)
        {
            RequireRowShaped(mask, maskName, rowShape);
            if (mask.dtype != ScalarType.Bool && !is_integral(mask.dtype))
            {
                throw new ArgumentException($"{maskName} must be bool (true = keep) or an integer 0/1 tensor; got {mask.dtype}.", maskName);
            }
            keep = mask.dtype == ScalarType.Bool ? mask.to(device) : mask.to(device).ne(0);
        }
        if (labels is not null)
        {
            RequireRowShaped(labels, "labels", rowShape);
            if (!is_integral(labels.dtype) || labels.dtype == ScalarType.Bool)
            {
                throw new ArgumentException($"labels must be an integer tensor of class indices; got {labels.dtype}.", nameof(labels));
            }
            Tensor labelKeep = labels.to(device).ne(ignoreIndex);
            keep = keep is null ? labelKeep : keep.logical_and(labelKeep);
        }
        return keep;
    }

    /// <summary>
    /// The mask <see cref="ZeroDropped"/> needs: <paramref name="keep"/>, or null when nothing is dropped. On the CPU,
    /// where reading one flag back costs nothing, a batch that keeps every row (no padding, no ignored label) gets null
    /// and so skips the full-size copies; on an accelerator the copies are made rather than wait for the device. Call it
    /// once per loss call, not per tensor.
    /// </summary>
    public static Tensor? ForZeroing(Tensor? keep) =>
        keep is null || (keep.device_type == DeviceType.CPU && keep.all().item<bool>()) ? null : keep;

    /// <summary>Replaces the rows that are not kept with zeros, so nothing non-finite there reaches the math or its gradient.</summary>
    public static Tensor ZeroDropped(Tensor values, Tensor? keep, int trailingDimensions)
    {
        if (keep is null) return values;
        Tensor k = keep;
        for (int i = 0; i < trailingDimensions; i++) k = k.unsqueeze(-1);
        return where(k, values, zeros(1, dtype: values.dtype, device: values.device));
    }

    /// <summary>
    /// Mean of <paramref name="perRow"/> over the kept entries (<paramref name="keep"/> has its shape); 0 with zero
    /// gradient when none is kept, including an empty input (the element count is metadata: no host read).
    /// </summary>
    public static Tensor Mean(Tensor perRow, Tensor? keep)
    {
        if (keep is null) return perRow.numel() == 0 ? perRow.sum() : perRow.mean();
        return Sum(perRow, keep) / keep.sum().to(perRow.dtype).clamp_min(1);
    }

    /// <summary>Reduces <paramref name="perRow"/> (shaped like the rows) over the kept rows as <paramref name="reduction"/> says.</summary>
    public static Tensor Reduce(Tensor perRow, Tensor? keep, RowReduction reduction) => reduction switch
    {
        RowReduction.Sum => Sum(perRow, keep),
        RowReduction.BatchMean => Sum(perRow, keep) / Math.Max(1, perRow.dim() == 0 ? 1 : perRow.shape[0]),
        _ => Mean(perRow, keep),
    };

    /// <summary>Sum of <paramref name="perRow"/> over the kept entries; a dropped entry contributes 0 even when it is NaN.</summary>
    public static Tensor Sum(Tensor perRow, Tensor? keep) =>
        keep is null ? perRow.sum() : where(keep, perRow, zeros(1, dtype: perRow.dtype, device: perRow.device)).sum();

    private static void RequireRowShaped(Tensor tensor, string name, long[] rowShape)
    {
        if (!tensor.shape.SequenceEqual(rowShape))
        {
            throw new ArgumentException(
                $"{name} must have one entry per row, shape {Shapes.Describe(rowShape)}; got shape {Shapes.Describe(tensor.shape)}.", name);
        }
    }
}
