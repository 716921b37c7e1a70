using KnowledgeDistillation.Transformers;
using static KnowledgeDistillation.Onnx.OnnxGraph;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Emits a <see cref="GptModel"/>: token ids <c>[batch, sequence]</c> (both dynamic) to logits <c>[batch, sequence, V]</c>,
/// causal attention through a stored lower-triangular mask sliced to the sequence length, and optionally the hidden
/// states as <c>hidden.0</c> (embeddings) … <c>hidden.L</c>, indexed and placed as in <c>ModelOutput.HiddenStates</c>.
/// </summary>
internal static class GptExporter
{
    public static (string Logits, List<(string Name, string Value)> Hidden) Emit(OnnxGraph g, GptModel model, string ids, bool hiddenStates)
    {
        GptConfig config = model.Config;
        // An adapted model is exported merged.
        Dictionary<string, Tensor> w = KnowledgeDistillation.Adapters.Lora.MergedStateDict(model);
        var blocks = new TransformerBlockEmitter(g, w, config);

        string length = SequenceLength(g, ids);
        string positions = Positions(g, length);
        string x = g.Node("Add", "embeddings", [
            g.Node("Gather", "token_embeddings", [g.Weight("token_embedding.weight", w["token_embedding.weight"]), ids], Int("axis", 0)),
            g.Node("Gather", "position_embeddings", [g.Weight("position_embedding.weight", w["position_embedding.weight"]), positions], Int("axis", 0))]);

        // Additive causal mask for the longest context, sliced to [S, S]: 0 on and below the diagonal, float32's lowest value above.
        Tensor allowed = ones(config.ContextLength, config.ContextLength, dtype: ScalarType.Bool).tril();
        string mask = SlicedMask(g, allowed, length);

        var hidden = new List<(string, string)>();
        if (hiddenStates) hidden.Add(("hidden.0", x));
        for (int i = 0; i < config.Layers; i++)
        {
            x = blocks.Block(i, x, mask);
            if (hiddenStates) hidden.Add(($"hidden.{i + 1}", x));
        }
        string last = blocks.Finish(x, hidden);
        Tensor head = config.TieEmbeddings ? w["token_embedding.weight"] : w["lm_head.weight"];
        return (g.Node("MatMul", "logits", [last, g.Weight("lm_head.weight_t", head.t())]), hidden);
    }

    /// <summary>The sequence length of <c>[batch, sequence]</c> ids as a one-element int64 vector.</summary>
    public static string SequenceLength(OnnxGraph g, string ids) =>
        g.Node("Gather", "sequence_length", [g.Node("Shape", "ids_shape", [ids]), g.Longs("index_1", 1)], Int("axis", 0));

    /// <summary>The positions 0 … S − 1 (int64) for a sequence length given as a one-element vector.</summary>
    public static string Positions(OnnxGraph g, string length)
    {
        string lengthScalar = g.Node("Squeeze", "sequence_length_scalar", [length, g.Longs("axes_0", 0)]);
        return g.Node("Range", "positions", [g.Weight("zero", tensor(0L)), lengthScalar, g.Weight("one", tensor(1L))]);
    }

    /// <summary>A stored <c>[C, C]</c> additive mask (0 where <paramref name="allowed"/>, float32's lowest value elsewhere) sliced to <c>[S, S]</c>.</summary>
    public static string SlicedMask(OnnxGraph g, Tensor allowed, string length)
    {
        Tensor additive = zeros(allowed.shape).masked_fill(allowed.logical_not(), float.MinValue);
        string ends = g.Node("Concat", "mask_ends", [length, length], Int("axis", 0));
        return g.Node("Slice", "causal_mask", [g.Weight("causal_mask_full", additive), g.Longs("zeros_2", 0, 0), ends, g.Longs("axes_01", 0, 1)]);
    }
}
