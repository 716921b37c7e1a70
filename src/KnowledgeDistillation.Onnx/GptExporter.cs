using KnowledgeDistillation.Transformers;
using static KnowledgeDistillation.Onnx.OnnxGraph;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Emits a <see cref="GptModel"/>: token ids <c>[batch, sequence]</c> (both dynamic) to logits <c>[batch, sequence, V]</c>,
/// causal attention through a stored lower-triangular mask sliced to the sequence length, and optionally every block's
/// output as <c>hidden.{i}</c> (hidden state i + 1, before the final norm as <c>ModelOutput.HiddenStates</c> holds it).
/// </summary>
internal static class GptExporter
{
    public static (string Logits, List<(string Name, string Value)> Hidden) Emit(OnnxGraph g, GptModel model, string ids, bool hiddenStates)
    {
        GptConfig config = model.Config;
        Dictionary<string, Tensor> w = model.state_dict();
        int heads = config.Heads, width = config.Width, headWidth = width / heads;

        string shape = g.Node("Shape", "ids_shape", [ids]);
        string length = g.Node("Gather", "sequence_length", [shape, g.Longs("index_1", 1)], Int("axis", 0)); // [1]
        string lengthScalar = g.Node("Squeeze", "sequence_length_scalar", [length, g.Longs("axes_0", 0)]);
        string positions = g.Node("Range", "positions", [g.Weight("zero", tensor(0L)), lengthScalar, g.Weight("one", tensor(1L))]);
        string x = g.Node("Add", "embeddings", [
            g.Node("Gather", "token_embeddings", [g.Weight("token_embedding.weight", w["token_embedding.weight"]), ids], Int("axis", 0)),
            g.Node("Gather", "position_embeddings", [g.Weight("position_embedding.weight", w["position_embedding.weight"]), positions], Int("axis", 0))]);

        // Additive causal mask for the longest context, sliced to [S, S]: 0 on and below the diagonal, float32's lowest value above.
        Tensor causal = zeros(config.ContextLength, config.ContextLength).masked_fill(ones(config.ContextLength, config.ContextLength, dtype: ScalarType.Bool).triu(1), float.MinValue);
        string zeros2 = g.Longs("zeros_2", 0, 0), axes01 = g.Longs("axes_01", 0, 1);
        string ends = g.Node("Concat", "mask_ends", [length, length], Int("axis", 0));
        string mask = g.Node("Slice", "causal_mask", [g.Weight("causal_mask_full", causal), zeros2, ends, axes01]);
        string headShape = g.Longs("head_shape", 0, 0, 3, heads, headWidth), mergedShape = g.Longs("merged_shape", 0, 0, width);
        string scale = g.Scalar("attention_scale", (float)(1.0 / Math.Sqrt(headWidth)));

        var hidden = new List<(string, string)>();
        for (int i = 0; i < config.Layers; i++)
        {
            string p = $"blocks.{i}.";
            string Norm(string input, string which) => g.Node("LayerNormalization", p + which, [input, g.Weight(p + which + ".weight", w[p + which + ".weight"]), g.Weight(p + which + ".bias", w[p + which + ".bias"])],
                Int("axis", -1), Float("epsilon", (float)config.LayerNormEpsilon));
            string Linear(string input, string layer) => g.Node("Add", p + layer, [g.Node("MatMul", p + layer + ".matmul", [input, g.Weight(p + layer + ".weight_t", w[p + layer + ".weight"].t())]), g.Weight(p + layer + ".bias", w[p + layer + ".bias"])]);
            string Attention(string input)
            {
                string qkv = g.Node("Transpose", p + "qkv_heads", [g.Node("Reshape", p + "qkv_split", [Linear(input, "attention.qkv"), headShape])], Ints("perm", [2, 0, 3, 1, 4]));
                string Part(int index, string hint) => g.Node("Gather", p + hint, [qkv, g.Weight(p + hint + "_index", tensor((long)index))], Int("axis", 0));
                string q = Part(0, "query"), k = Part(1, "key"), v = Part(2, "value");
                string scores = g.Node("Add", p + "scores", [g.Node("Mul", p + "scaled", [g.Node("MatMul", p + "qk", [q, g.Node("Transpose", p + "key_t", [k], Ints("perm", [0, 1, 3, 2]))]), scale]), mask]);
                string context = g.Node("MatMul", p + "context", [g.Node("Softmax", p + "probabilities", [scores], Int("axis", -1)), v]);
                string merged = g.Node("Reshape", p + "merged", [g.Node("Transpose", p + "context_t", [context], Ints("perm", [0, 2, 1, 3])), mergedShape]);
                return Linear(merged, "attention.output");
            }
            string FeedForward(string input)
            {
                string expanded = Linear(input, "feed_forward.expand");
                return Linear(Activation(g, p + "activation", expanded, config.Activation), "feed_forward.project");
            }
            if (config.NormPlacement == NormPlacement.Pre)
            {
                x = g.Node("Add", p + "residual_1", [x, Attention(Norm(x, "attention_norm"))]);
                x = g.Node("Add", p + "residual_2", [x, FeedForward(Norm(x, "feed_forward_norm"))]);
            }
            else
            {
                x = Norm(g.Node("Add", p + "residual_1", [x, Attention(x)]), "attention_norm");
                x = Norm(g.Node("Add", p + "residual_2", [x, FeedForward(x)]), "feed_forward_norm");
            }
            if (hiddenStates) hidden.Add(($"hidden.{i + 1}", x));
        }
        string last = g.Node("LayerNormalization", "final_norm", [x, g.Weight("final_norm.weight", w["final_norm.weight"]), g.Weight("final_norm.bias", w["final_norm.bias"])],
            Int("axis", -1), Float("epsilon", (float)config.LayerNormEpsilon));
        Tensor head = config.TieEmbeddings ? w["token_embedding.weight"] : w["lm_head.weight"];
        string logits = g.Node("MatMul", "logits", [last, g.Weight("lm_head.weight_t", head.t())]);
        return (logits, hidden);
    }

    private static string Activation(OnnxGraph g, string name, string x, FeedForwardActivation activation) => activation switch
    {
        FeedForwardActivation.Silu => g.Node("Mul", name, [x, g.Node("Sigmoid", name + ".sigmoid", [x])]),
        _ => SequentialExporter.Gelu(g, name, x, tanh: activation == FeedForwardActivation.GeluTanh),
    };
}
