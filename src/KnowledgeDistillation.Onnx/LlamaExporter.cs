using KnowledgeDistillation.Transformers;
using static KnowledgeDistillation.Onnx.OnnxGraph;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Emits a <see cref="LlamaModel"/> (Llama, Qwen2, Mistral): RMSNorm in float32 terms, rotary embeddings from stored
/// cos/sin tables sliced to the sequence length, grouped-query attention by expanding key/value heads, the gated
/// feed-forward network, and a causal (or sliding-window) mask sliced like the tables.
/// </summary>
internal static class LlamaExporter
{
    public static (string Logits, List<(string Name, string Value)> Hidden) Emit(OnnxGraph g, LlamaModel model, string ids, bool hiddenStates)
    {
        LlamaConfig config = model.Config;
        // An adapted model is exported merged.
        Dictionary<string, Tensor> w = KnowledgeDistillation.Adapters.Lora.MergedStateDict(model);
        int heads = config.Heads, kvHeads = config.EffectiveKeyValueHeads, headWidth = config.EffectiveHeadWidth, groups = heads / kvHeads;
        long context = config.ContextLength;

        string length = GptExporter.SequenceLength(g, ids);
        string zero1 = g.Longs("zero_1", 0), axis0 = g.Longs("axis_0", 0);

        // Rotary tables for every position of the context, [C, d], sliced to [S, d].
        (Tensor cos, Tensor sin) = RotaryTables(context, headWidth, config.RopeTheta);
        string cosS = g.Node("Slice", "rope_cos", [g.Weight("rope_cos_full", cos), zero1, length, axis0]);
        string sinS = g.Node("Slice", "rope_sin", [g.Weight("rope_sin_full", sin), zero1, length, axis0]);
        Tensor allowed = ones(context, context, dtype: ScalarType.Bool).tril();
        if (config.SlidingWindow is { } window) allowed = allowed.logical_and(ones(context, context, dtype: ScalarType.Bool).triu(1 - window));
        string mask = GptExporter.SlicedMask(g, allowed, length);
        string scale = g.Scalar("attention_scale", (float)(1.0 / Math.Sqrt(headWidth)));
        string half = g.Longs("half", headWidth / 2), full = g.Longs("full", headWidth), lastAxis = g.Longs("last_axis", -1);

        string x = g.Node("Gather", "embeddings", [g.Weight("token_embedding.weight", w["token_embedding.weight"]), ids], Int("axis", 0));
        var hidden = new List<(string, string)>();
        if (hiddenStates) hidden.Add(("hidden.0", x));
        for (int i = 0; i < config.Layers; i++)
        {
            string p = $"blocks.{i}.";
            string Projection(string input, string layer)
            {
                string y = g.Node("MatMul", p + layer, [input, g.Weight(p + layer + ".weight_t", w[p + layer + ".weight"].t())]);
                return w.TryGetValue(p + layer + ".bias", out Tensor? bias) ? g.Node("Add", p + layer + ".biased", [y, g.Weight(p + layer + ".bias", bias)]) : y;
            }
            string Heads(string projected, int count, string hint) =>
                g.Node("Transpose", p + hint + "_heads", [g.Node("Reshape", p + hint + "_split", [projected, g.Longs(p + hint + "_shape", 0, 0, count, headWidth)])], Ints("perm", [0, 2, 1, 3]));
            string Rotate(string t, string hint)
            {
                string first = g.Node("Slice", p + hint + "_x1", [t, zero1, half, lastAxis]);
                string second = g.Node("Slice", p + hint + "_x2", [t, half, full, lastAxis]);
                string rotated = g.Node("Concat", p + hint + "_rotated", [g.Node("Neg", p + hint + "_neg", [second]), first], Int("axis", -1));
                return g.Node("Add", p + hint + "_rope", [g.Node("Mul", p + hint + "_cos", [t, cosS]), g.Node("Mul", p + hint + "_sin", [rotated, sinS])]);
            }
            string Expand(string t, string hint)
            {
                if (groups == 1) return t;
                // [B, KV, S, d] → [B, KV, 1, S, d] → [B, KV, groups, S, d] → [B, H, S, d]: query head h reads key/value head h / groups.
                string unsqueezed = g.Node("Unsqueeze", p + hint + "_unsqueezed", [t, g.Longs(p + hint + "_axis2", 2)]);
                string tShape = g.Node("Shape", p + hint + "_shape_of", [unsqueezed]);
                string target = g.Node("Mul", p + hint + "_target", [tShape, g.Longs(p + hint + "_repeat", 1, 1, groups, 1, 1)]);
                string expanded = g.Node("Expand", p + hint + "_expanded", [unsqueezed, target]);
                return g.Node("Reshape", p + hint + "_grouped", [expanded, g.Longs(p + hint + "_merge", 0, heads, -1, headWidth)]);
            }

            string normed = RmsNorm(g, p + "attention_norm", x, w[p + "attention_norm.weight"], config.LayerNormEpsilon);
            string q = Rotate(Heads(Projection(normed, "attention.query"), heads, "query"), "query");
            string k = Expand(Rotate(Heads(Projection(normed, "attention.key"), kvHeads, "key"), "key"), "key");
            string v = Expand(Heads(Projection(normed, "attention.value"), kvHeads, "value"), "value");
            string scores = g.Node("Add", p + "scores", [g.Node("Mul", p + "scaled", [g.Node("MatMul", p + "qk", [q, g.Node("Transpose", p + "key_t", [k], Ints("perm", [0, 1, 3, 2]))]), scale]), mask]);
            string context2 = g.Node("MatMul", p + "context", [g.Node("Softmax", p + "probabilities", [scores], Int("axis", -1)), v]);
            string merged = g.Node("Reshape", p + "merged", [g.Node("Transpose", p + "context_t", [context2], Ints("perm", [0, 2, 1, 3])), g.Longs(p + "merged_shape", 0, 0, heads * headWidth)]);
            x = g.Node("Add", p + "residual_1", [x, Projection(merged, "attention.output")]);

            string normed2 = RmsNorm(g, p + "feed_forward_norm", x, w[p + "feed_forward_norm.weight"], config.LayerNormEpsilon);
            string gate = Projection(normed2, "feed_forward.gate");
            string activated = config.Activation == FeedForwardActivation.Silu
                ? g.Node("Mul", p + "silu", [gate, g.Node("Sigmoid", p + "sigmoid", [gate])])
                : SequentialExporter.Gelu(g, p + "gelu", gate, config.Activation == FeedForwardActivation.GeluTanh);
            string product = g.Node("Mul", p + "gated", [activated, Projection(normed2, "feed_forward.up")]);
            x = g.Node("Add", p + "residual_2", [x, Projection(product, "feed_forward.down")]);
            if (hiddenStates) hidden.Add(($"hidden.{i + 1}", x));
        }
        string last = RmsNorm(g, "final_norm", x, w["final_norm.weight"], config.LayerNormEpsilon);
        if (config.HiddenStates == HiddenStateConvention.HuggingFace && hidden.Count > 1) hidden[^1] = (hidden[^1].Item1, last);
        Tensor head = config.TieEmbeddings ? w["token_embedding.weight"] : w["lm_head.weight"];
        return (g.Node("MatMul", "logits", [last, g.Weight("lm_head.weight_t", head.t())]), hidden);
    }

    /// <summary>weight · x / √(mean(x²) + ε) over the last axis.</summary>
    private static string RmsNorm(OnnxGraph g, string name, string x, Tensor weight, double epsilon)
    {
        string square = g.Node("Mul", name + ".square", [x, x]);
        // ReduceMean's axes are an attribute up to opset 17 and an input from opset 18.
        string meanSquare = g.Opset >= 18
            ? g.Node("ReduceMean", name + ".mean_square", [square, g.Longs(name + ".axes", -1)], Int("keepdims", 1))
            : g.Node("ReduceMean", name + ".mean_square", [square], Ints("axes", [-1]), Int("keepdims", 1));
        string root = g.Node("Sqrt", name + ".root", [g.Node("Add", name + ".plus_eps", [meanSquare, g.Scalar(name + ".eps", (float)epsilon)])]);
        return g.Node("Mul", name, [g.Node("Div", name + ".normalized", [x, root]), g.Weight(name + ".weight", weight)]);
    }

    /// <summary>The model's own angles (the same float32 computation as <c>RotaryEmbedding.Angles</c>), for positions 0 … C − 1.</summary>
    private static (Tensor Cos, Tensor Sin) RotaryTables(long context, int headWidth, double theta)
    {
        Tensor exponents = arange(0, headWidth, 2, dtype: ScalarType.Int64).to(ScalarType.Float32).div(headWidth);
        Tensor inverse = full_like(exponents, theta).pow(exponents).reciprocal();
        Tensor frequencies = arange(context, dtype: ScalarType.Int64).to(ScalarType.Float32).unsqueeze(-1) * inverse;
        Tensor angles = cat([frequencies, frequencies], -1);
        return (angles.cos(), angles.sin());
    }
}
