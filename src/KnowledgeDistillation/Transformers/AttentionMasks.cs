using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// Builds additive attention masks. Masked cells get the dtype's lowest finite value rather than -inf, so a query
/// with no visible key (a fully padded row) gets a uniform distribution instead of NaN, and attention losses on
/// scores can recognise masked cells by a threshold.
/// </summary>
internal static class AttentionMasks
{
    /// <summary>0 where <paramref name="allowed"/> is true, the lowest finite value of <paramref name="dtype"/> elsewhere.</summary>
    public static Tensor Additive(Tensor allowed, ScalarType dtype)
    {
        return zeros(allowed.shape, dtype: dtype, device: allowed.device).masked_fill(allowed.logical_not(), finfo(dtype).min);
    }

    /// <summary><c>[S, S]</c> bool: true where query i may see key j, i.e. j ≤ i.</summary>
    public static Tensor Causal(long length, Device device) => ones(length, length, dtype: ScalarType.Bool, device: device).tril();

    /// <summary>
    /// The <c>[B, 1, S, S]</c> additive mask for a padding mask <c>[B, S]</c> (true/1 = real token), combined with a
    /// causal mask when <paramref name="causal"/>; null when there is no padding mask (the fast paths handle causality).
    /// </summary>
    public static Tensor? ForPadding(Tensor? paddingMask, bool causal, ScalarType dtype)
    {
        if (paddingMask is null) return null;
        Tensor keys = (paddingMask.dtype == ScalarType.Bool ? paddingMask : paddingMask.ne(0)).unsqueeze(1).unsqueeze(2); // [B, 1, 1, S]
        long length = paddingMask.shape[1];
        Tensor allowed = causal
            ? keys.logical_and(Causal(length, paddingMask.device))
            : keys.expand(paddingMask.shape[0], 1, length, length);
        return Additive(allowed, dtype);
    }

    /// <summary>
    /// The <c>[B or 1, 1, S, past + S]</c> additive mask of a causal decoder whose <paramref name="queries"/> new tokens
    /// follow <paramref name="past"/> cached ones: query i (at absolute index past + i) sees key j when j ≤ past + i,
    /// when the padding mask (<c>[B, past + S]</c>, true/1 = real) allows j, and, with a sliding window, when
    /// past + i − j &lt; window. Null when plain causal attention without a cache is exact (the fused kernel's own mode).
    /// </summary>
    public static Tensor? ForDecoder(Tensor? paddingMask, long queries, long past, int? slidingWindow, ScalarType dtype, Device device)
    {
        long keys = past + queries;
        bool windowed = slidingWindow is { } w && w < keys;
        if (paddingMask is null && !windowed && past == 0) return null;
        Tensor query = arange(past, keys, dtype: ScalarType.Int64, device: device).unsqueeze(1);
        Tensor key = arange(keys, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        Tensor allowed = key.le(query);
        if (windowed) allowed = allowed.logical_and((query - key).lt(slidingWindow!.Value));
        allowed = allowed.unsqueeze(0).unsqueeze(0);
        if (paddingMask is not null)
        {
            Tensor real = (paddingMask.dtype == ScalarType.Bool ? paddingMask : paddingMask.ne(0)).unsqueeze(1).unsqueeze(2);
            allowed = real.logical_and(allowed);
        }
        return Additive(allowed, dtype);
    }
}
