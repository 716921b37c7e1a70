using KnowledgeDistillation.Transformers;
namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// The correspondence between our reference models' parameter names and Hugging Face's, per architecture. The
/// tables are listed in docs/models.md.
/// </summary>
internal static class HuggingFaceMappings
{
    /// <summary><c>GPT2LMHeadModel</c>: Conv1D weights stored [in, out]; the LM head tied to <c>wte</c> unless configured otherwise.</summary>
    public static WeightNameMapping Gpt2(GptConfig config)
    {
        var map = new WeightNameMapping("transformer.");
        map.Same("token_embedding.weight", "wte.weight");
        map.Same("position_embedding.weight", "wpe.weight");
        for (int i = 0; i < config.Layers; i++)
        {
            string ours = $"blocks.{i}.", theirs = $"h.{i}.";
            LayerNorm(map, ours + "attention_norm", theirs + "ln_1");
            map.Transposed(ours + "attention.qkv.weight", theirs + "attn.c_attn.weight");
            map.Same(ours + "attention.qkv.bias", theirs + "attn.c_attn.bias");
            map.Transposed(ours + "attention.output.weight", theirs + "attn.c_proj.weight");
            map.Same(ours + "attention.output.bias", theirs + "attn.c_proj.bias");
            LayerNorm(map, ours + "feed_forward_norm", theirs + "ln_2");
            map.Transposed(ours + "feed_forward.expand.weight", theirs + "mlp.c_fc.weight");
            map.Same(ours + "feed_forward.expand.bias", theirs + "mlp.c_fc.bias");
            map.Transposed(ours + "feed_forward.project.weight", theirs + "mlp.c_proj.weight");
            map.Same(ours + "feed_forward.project.bias", theirs + "mlp.c_proj.bias");
        }
        LayerNorm(map, "final_norm", "ln_f");
        if (config.TieEmbeddings) map.Tied("lm_head.weight", "wte.weight", "GptConfig.TieEmbeddings = true");
        else map.Same("lm_head.weight", "lm_head.weight", head: true);
        map.Ignore(name => name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal));
        return map;
    }

    /// <summary>
    /// BERT: <c>BertModel</c> (no prefix, when <paramref name="bareEncoder"/>), or <c>BertForSequenceClassification</c> /
    /// <c>BertForMaskedLM</c> / <c>BertForPreTraining</c> (the encoder under "bert."). Query, key and value are stacked
    /// into our single projection. Heads and the pooler are optional on load: a checkpoint without them leaves them as
    /// initialised and the report lists them.
    /// </summary>
    public static WeightNameMapping Bert(BertConfig config, bool bareEncoder = false)
    {
        var map = new WeightNameMapping(bareEncoder ? "" : "bert.", new() { [".weight"] = ".gamma", [".bias"] = ".beta" });
        map.Same("word_embedding.weight", "embeddings.word_embeddings.weight");
        map.Same("position_embedding.weight", "embeddings.position_embeddings.weight");
        map.Same("token_type_embedding.weight", "embeddings.token_type_embeddings.weight");
        LayerNorm(map, "embedding_norm", "embeddings.LayerNorm");
        for (int i = 0; i < config.Layers; i++)
        {
            string ours = $"blocks.{i}.", theirs = $"encoder.layer.{i}.";
            foreach (string part in new[] { "weight", "bias" })
            {
                map.Concatenated($"{ours}attention.qkv.{part}",
                    $"{theirs}attention.self.query.{part}", $"{theirs}attention.self.key.{part}", $"{theirs}attention.self.value.{part}");
                map.Same($"{ours}attention.output.{part}", $"{theirs}attention.output.dense.{part}");
                map.Same($"{ours}feed_forward.expand.{part}", $"{theirs}intermediate.dense.{part}");
                map.Same($"{ours}feed_forward.project.{part}", $"{theirs}output.dense.{part}");
            }
            LayerNorm(map, ours + "attention_norm", theirs + "attention.output.LayerNorm");
            LayerNorm(map, ours + "feed_forward_norm", theirs + "output.LayerNorm");
        }
        foreach (string part in new[] { "weight", "bias" })
        {
            map.Same($"pooler.{part}", $"pooler.dense.{part}", optional: true);
            map.Same($"classifier.{part}", $"classifier.{part}", head: true, optional: true);
            map.Same($"mlm_transform.{part}", $"cls.predictions.transform.dense.{part}", head: true, optional: true);
            map.Same($"mlm_norm.{part}", $"cls.predictions.transform.LayerNorm.{part}", head: true, optional: true);
        }
        map.Same("mlm_bias", "cls.predictions.bias", head: true, optional: true);
        if (config.Head == BertHead.MaskedLM)
        {
            map.Tied("cls.predictions.decoder.weight", "embeddings.word_embeddings.weight", "the masked-LM decoder is the word embedding matrix");
            map.Tied("cls.predictions.decoder.bias", "cls.predictions.bias", "the masked-LM decoder's bias is cls.predictions.bias");
        }
        map.Ignore(name => name is "embeddings.position_ids");
        return map;
    }

    /// <summary><c>LlamaForCausalLM</c>, <c>Qwen2ForCausalLM</c>, <c>MistralForCausalLM</c>: the decoder under "model.", the LM head outside it.</summary>
    public static WeightNameMapping Llama(LlamaConfig config)
    {
        var map = new WeightNameMapping("model.");
        map.Same("token_embedding.weight", "embed_tokens.weight");
        for (int i = 0; i < config.Layers; i++)
        {
            string ours = $"blocks.{i}.", theirs = $"layers.{i}.";
            map.Same(ours + "attention_norm.weight", theirs + "input_layernorm.weight");
            map.Same(ours + "feed_forward_norm.weight", theirs + "post_attention_layernorm.weight");
            foreach ((string o, string t) in new[] { ("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"), ("output", "o_proj") })
            {
                map.Same($"{ours}attention.{o}.weight", $"{theirs}self_attn.{t}.weight");
                map.Same($"{ours}attention.{o}.bias", $"{theirs}self_attn.{t}.bias");
            }
            foreach ((string o, string t) in new[] { ("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj") })
            {
                map.Same($"{ours}feed_forward.{o}.weight", $"{theirs}mlp.{t}.weight");
                map.Same($"{ours}feed_forward.{o}.bias", $"{theirs}mlp.{t}.bias");
            }
        }
        map.Same("final_norm.weight", "norm.weight");
        if (config.TieEmbeddings) map.Tied("lm_head.weight", "embed_tokens.weight", "LlamaConfig.TieEmbeddings = true");
        else map.Same("lm_head.weight", "lm_head.weight", head: true);
        map.Ignore(name => name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal));
        return map;
    }

    private static void LayerNorm(WeightNameMapping map, string ours, string theirs)
    {
        map.Same(ours + ".weight", theirs + ".weight");
        map.Same(ours + ".bias", theirs + ".bias");
    }
}
