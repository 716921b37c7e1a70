using KnowledgeDistillation.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// Causal grouped-query attention with rotary position embeddings (Llama, Qwen2, Mistral): H query heads share
/// H_kv key/value heads, query head h reading key/value head ⌊h·H_kv/H⌋. Without a request for maps it runs PyTorch's
/// fused <c>scaled_dot_product_attention</c>; with one it computes softmax(QKᵀ/√d + mask)·V explicitly.
/// </summary>
/// <remarks>Parameters: <c>query</c> (D → H·d), <c>key</c> and <c>value</c> (D → H_kv·d), <c>output</c> (H·d → D).</remarks>
public sealed class GroupedQueryAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear query;
    private readonly Linear key;
    private readonly Linear value;
    private readonly Linear output;
    private readonly int _heads;
    private readonly int _keyValueHeads;
    private readonly int _headWidth;
    private readonly double _dropout;
    private readonly double _ropeTheta;

    /// <summary>Creates the attention shaped by <paramref name="config"/>.</summary>
    public GroupedQueryAttention(LlamaConfig config) : base(nameof(GroupedQueryAttention))
    {
        ArgumentNullException.ThrowIfNull(config);
        _heads = config.Heads;
        _keyValueHeads = config.EffectiveKeyValueHeads;
        _headWidth = config.EffectiveHeadWidth;
        _dropout = config.Dropout;
        _ropeTheta = config.RopeTheta;
        query = nn.Linear(config.Width, _heads * _headWidth, hasBias: config.QueryKeyValueBias);
        key = nn.Linear(config.Width, _keyValueHeads * _headWidth, hasBias: config.QueryKeyValueBias);
        value = nn.Linear(config.Width, _keyValueHeads * _headWidth, hasBias: config.QueryKeyValueBias);
        output = nn.Linear(_heads * _headWidth, config.Width, hasBias: config.OutputBias);
        RegisterComponents();
    }

    /// <summary>Causal attention over <c>[B, S, D]</c> at positions 0 … S − 1.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        (Tensor cos, Tensor sin) = RotaryEmbedding.Angles(x.shape[1], _headWidth, _ropeTheta, x.device, x.dtype);
        return Attend(x, null, cos, sin, false).Output.MoveToOuterDisposeScope();
    }

    /// <summary>Attends over <c>[B, S, D]</c>.</summary>
    /// <param name="x">Inputs.</param>
    /// <param name="additiveMask">Null for plain causal attention, or <c>[B or 1, 1, S, S]</c> of 0 (attend) and the dtype's lowest value (do not); it must include causality.</param>
    /// <param name="cos">Rotary cosines, <c>[S, d]</c>.</param>
    /// <param name="sin">Rotary sines, <c>[S, d]</c>.</param>
    /// <param name="returnMaps">Compute explicitly and return the scores and probabilities, <c>[B, H, S, past + S]</c>.</param>
    /// <param name="cache">A key/value cache to read earlier tokens' keys and values from and append these to, or null.</param>
    /// <param name="layer">This layer's index in <paramref name="cache"/>.</param>
    /// <param name="returnStates">Return the queries, keys and values before the rotary embedding (<see cref="SelfAttentionStates"/>).</param>
    public AttentionResult Attend(Tensor x, Tensor? additiveMask, Tensor cos, Tensor sin, bool returnMaps, KeyValueCache? cache = null, int layer = 0, bool returnStates = false)
    {
        long batch = x.shape[0], length = x.shape[1];
        Tensor queries = query.call(x), keys = key.call(x), values = value.call(x);
        SelfAttentionStates? states = returnStates ? new SelfAttentionStates(queries, keys, values) : null;
        Tensor q = RotaryEmbedding.Apply(Heads(queries, _heads), cos, sin);
        Tensor k = RotaryEmbedding.Apply(Heads(keys, _keyValueHeads), cos, sin);
        Tensor v = Heads(values, _keyValueHeads);
        if (cache is not null) (k, v) = cache.Append(layer, k, v);
        int groups = _heads / _keyValueHeads;
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }
        double dropout = training ? _dropout : 0;

        Tensor? scores = null, probabilities = null;
        Tensor context;
        if (!returnMaps)
        {
            context = F.scaled_dot_product_attention(q, k, v, additiveMask, dropout, additiveMask is null);
        }
        else
        {
            Tensor mask = additiveMask ?? SelfAttention.CausalMask(length, x.dtype, x.device);
            scores = q.matmul(k.transpose(-2, -1)).mul(1.0 / Math.Sqrt(_headWidth)).add(mask);
            probabilities = scores.softmax(-1);
            context = F.dropout(probabilities, dropout, training).matmul(v);
        }
        Tensor merged = context.transpose(1, 2).reshape(batch, length, _heads * _headWidth);
        return new AttentionResult(output.call(merged), scores, probabilities, states);
    }

    private Tensor Heads(Tensor projected, int heads) =>
        projected.view(projected.shape[0], projected.shape[1], heads, _headWidth).transpose(1, 2);
}
