using KnowledgeDistillation.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// Multi-head self-attention that can return its per-head maps. Without a request for maps it runs PyTorch's fused
/// <c>scaled_dot_product_attention</c>; with one it computes softmax(QKᵀ/√d + mask)·V explicitly and keeps the
/// scores and probabilities.
/// </summary>
/// <remarks>Parameters: <c>qkv</c> (D → 3D, rows ordered query, key, value) and <c>output</c> (D → D).</remarks>
public sealed class SelfAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear qkv;
    private readonly Linear output;
    private readonly int _heads;
    private readonly double _dropout;

    /// <summary>Creates the attention for width <paramref name="width"/> and <paramref name="heads"/> heads.</summary>
    public SelfAttention(int width, int heads, double dropout) : base(nameof(SelfAttention))
    {
        qkv = nn.Linear(width, 3 * width);
        output = nn.Linear(width, width);
        _heads = heads;
        _dropout = dropout;
        RegisterComponents();
    }

    /// <summary>Unmasked, non-causal attention over <c>[B, S, D]</c>.</summary>
    public override Tensor forward(Tensor x) => Attend(x, null, false, false).Output;

    /// <summary>Attends over <c>[B, S, D]</c>.</summary>
    /// <param name="x">Inputs.</param>
    /// <param name="additiveMask">Null, or <c>[B, 1, S, S]</c> of 0 (attend) and the dtype's lowest value (do not).</param>
    /// <param name="causal">With no mask given, attend only to earlier positions (the fused kernel's own causal mode).</param>
    /// <param name="returnMaps">Compute explicitly and return the scores and probabilities.</param>
    /// <param name="cache">A key/value cache to read earlier tokens' keys and values from and append these to (decoders), or null.</param>
    /// <param name="layer">This layer's index in <paramref name="cache"/>.</param>
    /// <param name="returnStates">Return the queries, keys and values (<see cref="SelfAttentionStates"/>).</param>
    public AttentionResult Attend(Tensor x, Tensor? additiveMask, bool causal, bool returnMaps, KeyValueCache? cache = null, int layer = 0, bool returnStates = false)
    {
        long batch = x.shape[0], length = x.shape[1], width = x.shape[2], headWidth = width / _heads;
        Tensor projected = qkv.call(x);
        SelfAttentionStates? states = returnStates
            ? new SelfAttentionStates(projected.narrow(2, 0, width), projected.narrow(2, width, width), projected.narrow(2, 2 * width, width))
            : null;
        Tensor[] parts = projected.view(batch, length, 3, _heads, headWidth).permute(2, 0, 3, 1, 4).unbind(0);
        Tensor q = parts[0], k = parts[1], v = parts[2];
        if (cache is not null) (k, v) = cache.Append(layer, k, v);
        double dropout = training ? _dropout : 0;

        Tensor? scores = null, probabilities = null;
        Tensor context;
        if (!returnMaps)
        {
            context = F.scaled_dot_product_attention(q, k, v, additiveMask, dropout, causal && additiveMask is null); // TorchSharp names that argument is_casual
        }
        else
        {
            Tensor mask = additiveMask ?? (causal ? CausalMask(length, x.dtype, x.device) : zeros(1, dtype: x.dtype, device: x.device));
            scores = q.matmul(k.transpose(-2, -1)).mul(1.0 / Math.Sqrt(headWidth)).add(mask);
            probabilities = scores.softmax(-1);
            context = F.dropout(probabilities, dropout, training).matmul(v);
        }
        Tensor merged = context.transpose(1, 2).reshape(batch, length, width);
        return new AttentionResult(output.call(merged), scores, probabilities, states);
    }

    /// <summary><c>[1, 1, S, S]</c>: 0 on and below the diagonal, the dtype's lowest value above it.</summary>
    internal static Tensor CausalMask(long length, ScalarType dtype, Device device) =>
        AttentionMasks.Additive(AttentionMasks.Causal(length, device).unsqueeze(0).unsqueeze(0), dtype);
}

/// <summary>One attention call's output and, when requested, its maps (<c>[B, H, S, S]</c>).</summary>
public readonly record struct AttentionResult(Tensor Output, Tensor? Scores, Tensor? Probabilities, SelfAttentionStates? States = null);
