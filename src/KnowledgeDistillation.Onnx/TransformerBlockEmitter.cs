using KnowledgeDistillation.Transformers;
using static KnowledgeDistillation.Onnx.OnnxGraph;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Emits the pieces <see cref="GptModel"/> and <see cref="BertModel"/> share: a <see cref="TransformerBlock"/> (fused
/// q/k/v projection, scaled dot-product attention with an additive mask, the feed-forward network, pre- or post-norm
/// residuals), layer norms, linear layers and the configured activation. Weights are read from the model's state
/// dictionary under the block's prefix.
/// </summary>
internal sealed class TransformerBlockEmitter(OnnxGraph g, Dictionary<string, Tensor> w, TransformerConfig config)
{
    private readonly int _headWidth = config.Width / config.Heads;
    private string? _headShape, _mergedShape, _scale;

    public string LayerNorm(string input, string name) =>
        g.Node("LayerNormalization", name, [input, g.Weight(name + ".weight", w[name + ".weight"]), g.Weight(name + ".bias", w[name + ".bias"])],
            Int("axis", -1), Float("epsilon", (float)config.LayerNormEpsilon));

    /// <summary>x Wᵀ + b for the <c>Linear</c> at <paramref name="name"/>.</summary>
    public string Linear(string input, string name) =>
        g.Node("Add", name, [g.Node("MatMul", name + ".matmul", [input, g.Weight(name + ".weight_t", w[name + ".weight"].t())]), g.Weight(name + ".bias", w[name + ".bias"])]);

    public string Activation(string name, string x) => config.Activation switch
    {
        FeedForwardActivation.Silu => g.Node("Mul", name, [x, g.Node("Sigmoid", name + ".sigmoid", [x])]),
        _ => SequentialExporter.Gelu(g, name, x, tanh: config.Activation == FeedForwardActivation.GeluTanh),
    };

    /// <summary>Block <paramref name="index"/> applied to <paramref name="x"/> <c>[B, S, D]</c>; <paramref name="mask"/> broadcasts against the scores <c>[B, H, S, S]</c>.</summary>
    public string Block(int index, string x, string mask)
    {
        string p = $"blocks.{index}.";
        if (config.NormPlacement == NormPlacement.Pre)
        {
            x = g.Node("Add", p + "residual_1", [x, Attention(p, LayerNorm(x, p + "attention_norm"), mask)]);
            return g.Node("Add", p + "residual_2", [x, FeedForward(p, LayerNorm(x, p + "feed_forward_norm"))]);
        }
        x = LayerNorm(g.Node("Add", p + "residual_1", [x, Attention(p, x, mask)]), p + "attention_norm");
        return LayerNorm(g.Node("Add", p + "residual_2", [x, FeedForward(p, x)]), p + "feed_forward_norm");
    }

    private string Attention(string p, string input, string mask)
    {
        _headShape ??= g.Longs("head_shape", 0, 0, 3, config.Heads, _headWidth);
        _mergedShape ??= g.Longs("merged_shape", 0, 0, config.Width);
        _scale ??= g.Scalar("attention_scale", (float)(1.0 / Math.Sqrt(_headWidth)));
        // [B, S, 3D] → [B, S, 3, H, d] → [3, B, H, S, d], as SelfAttention splits the fused projection.
        string qkv = g.Node("Transpose", p + "qkv_heads", [g.Node("Reshape", p + "qkv_split", [Linear(input, p + "attention.qkv"), _headShape])], Ints("perm", [2, 0, 3, 1, 4]));
        string Part(int part, string hint) => g.Node("Gather", p + hint, [qkv, g.Weight(p + hint + "_index", tensor((long)part))], Int("axis", 0));
        string q = Part(0, "query"), k = Part(1, "key"), v = Part(2, "value");
        string scores = g.Node("Add", p + "scores", [g.Node("Mul", p + "scaled", [g.Node("MatMul", p + "qk", [q, g.Node("Transpose", p + "key_t", [k], Ints("perm", [0, 1, 3, 2]))]), _scale]), mask]);
        string context = g.Node("MatMul", p + "context", [g.Node("Softmax", p + "probabilities", [scores], Int("axis", -1)), v]);
        string merged = g.Node("Reshape", p + "merged", [g.Node("Transpose", p + "context_t", [context], Ints("perm", [0, 2, 1, 3])), _mergedShape]);
        return Linear(merged, p + "attention.output");
    }

    private string FeedForward(string p, string input) =>
        Linear(Activation(p + "activation", Linear(input, p + "feed_forward.expand")), p + "feed_forward.project");

    /// <summary>
    /// Applies the model's final norm when it has one (GPT always, BERT when pre-norm) and, under the Hugging Face
    /// convention, makes the normed state the last hidden state, as <c>TransformerStack</c> does.
    /// </summary>
    public string Finish(string last, List<(string Name, string Value)> hidden)
    {
        if (!w.ContainsKey("final_norm.weight")) return last;
        string normed = LayerNorm(last, "final_norm");
        if (config.HiddenStates == HiddenStateConvention.HuggingFace && hidden.Count > 1) hidden[^1] = (hidden[^1].Name, normed);
        return normed;
    }
}
