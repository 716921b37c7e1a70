using KnowledgeDistillation.Transformers;
using static KnowledgeDistillation.Onnx.OnnxGraph;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Emits a <see cref="BertModel"/> with the inputs Hugging Face's BERT exports have — <c>input_ids</c>,
/// <c>attention_mask</c> (1 = real token, 0 = padding) and <c>token_type_ids</c>, each int64 <c>[batch, sequence]</c> —
/// and the configured head: pooled classification logits <c>[batch, labels]</c>, masked-LM logits
/// <c>[batch, sequence, V]</c>, or the last hidden state.
/// </summary>
internal static class BertExporter
{
    public static (string Logits, List<(string Name, string Value)> Hidden) Emit(OnnxGraph g, BertModel model, string ids, string attentionMask, string tokenTypes, bool hiddenStates)
    {
        BertConfig config = model.Config;
        // An adapted model is exported merged.
        Dictionary<string, Tensor> w = KnowledgeDistillation.Adapters.Lora.MergedStateDict(model);
        var blocks = new TransformerBlockEmitter(g, w, config);

        string positions = GptExporter.Positions(g, GptExporter.SequenceLength(g, ids));
        string Embed(string table, string indices) => g.Node("Gather", table + ".lookup", [g.Weight(table + ".weight", w[table + ".weight"]), indices], Int("axis", 0));
        string sum = g.Node("Add", "embedding_sum", [g.Node("Add", "word_and_position", [Embed("word_embedding", ids), Embed("position_embedding", positions)]), Embed("token_type_embedding", tokenTypes)]);
        string x = blocks.LayerNorm(sum, "embedding_norm");

        // Padded keys get float32's lowest value, as AttentionMasks.ForPadding does: [B, S] → [B, 1, 1, S].
        string padded = g.Node("Equal", "padded_keys", [attentionMask, g.Weight("zero_id", tensor(0L))]);
        string additive = g.Node("Where", "padding_additive", [padded, g.Scalar("mask_lowest", float.MinValue), g.Scalar("mask_zero", 0f)]);
        string mask = g.Node("Unsqueeze", "padding_mask", [additive, g.Longs("axes_12", 1, 2)]);

        var hidden = new List<(string, string)>();
        if (hiddenStates) hidden.Add(("hidden.0", x));
        for (int i = 0; i < config.Layers; i++)
        {
            x = blocks.Block(i, x, mask);
            if (hiddenStates) hidden.Add(($"hidden.{i + 1}", x));
        }
        string h = blocks.Finish(x, hidden);
        return (Head(g, blocks, w, config, h), hidden);
    }

    private static string Head(OnnxGraph g, TransformerBlockEmitter blocks, Dictionary<string, Tensor> w, BertConfig config, string h)
    {
        switch (config.Head)
        {
            case BertHead.SequenceClassification:
                string first = g.Node("Gather", "first_token", [h, g.Weight("first_index", tensor(0L))], Int("axis", 1));
                string pooled = config.UsePooler ? g.Node("Tanh", "pooled", [blocks.Linear(first, "pooler")]) : first;
                return blocks.Linear(pooled, "classifier");
            case BertHead.MaskedLM:
                string transformed = blocks.LayerNorm(blocks.Activation("mlm_activation", blocks.Linear(h, "mlm_transform")), "mlm_norm");
                string scores = g.Node("MatMul", "mlm_scores", [transformed, g.Weight("word_embedding.weight_t", w["word_embedding.weight"].t())]);
                return g.Node("Add", "mlm_logits", [scores, g.Weight("mlm_bias", w["mlm_bias"])]);
            default:
                return h;
        }
    }
}
