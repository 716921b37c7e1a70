using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers.Checkpoints;

/// <summary>
/// Loads checkpoints that use Hugging Face's parameter names — GPT-2 (<c>GPT2LMHeadModel</c> / <c>GPT2Model</c>)
/// into <see cref="GptModel"/>, BERT (<c>BertForSequenceClassification</c> / <c>BertModel</c>) into
/// <see cref="BertModel"/> — from safetensors, <c>.bin</c> files or checkpoint folders. The name mapping is listed
/// in docs/models.md. Loading is all-or-nothing: every tensor is built and its shape checked before any is written,
/// so a checkpoint that does not fit leaves the model as it was.
/// </summary>
public static class HuggingFaceCheckpoint
{
    /// <summary>Loads a GPT-2-shaped checkpoint file or folder into <paramref name="model"/>.</summary>
    public static CheckpointLoadReport LoadGpt2(GptModel model, string path) => WithFile(path, stateDict => LoadGpt2(model, stateDict));

    /// <summary>Loads a GPT-2-named state dict into <paramref name="model"/> (which must be pre-norm with the tanh GELU, as GPT-2 is).</summary>
    public static CheckpointLoadReport LoadGpt2(GptModel model, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stateDict);
        GptConfig config = model.Config;
        RequireShape(config.NormPlacement == NormPlacement.Pre && config.Activation == FeedForwardActivation.GeluTanh,
            "GPT-2 checkpoints need a GptConfig with NormPlacement.Pre and FeedForwardActivation.GeluTanh", nameof(model));

        var map = new CheckpointMapping(["transformer."], []);
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
        if (config.TieEmbeddings) map.Ignore(name => name == "lm_head.weight");
        else map.Same("lm_head.weight", "lm_head.weight");
        map.Ignore(name => name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal));
        return map.Apply(model, stateDict, "GPT-2");
    }

    /// <summary>Loads a BERT-shaped checkpoint file or folder into <paramref name="model"/>.</summary>
    public static CheckpointLoadReport LoadBert(BertModel model, string path) => WithFile(path, stateDict => LoadBert(model, stateDict));

    /// <summary>Loads a BERT-named state dict into <paramref name="model"/> (which must be post-norm with the exact GELU, as BERT is).</summary>
    public static CheckpointLoadReport LoadBert(BertModel model, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stateDict);
        BertConfig config = model.Config;
        RequireShape(config.NormPlacement == NormPlacement.Post && config.Activation == FeedForwardActivation.Gelu,
            "BERT checkpoints need a BertConfig with NormPlacement.Post and FeedForwardActivation.Gelu", nameof(model));

        var map = new CheckpointMapping(["bert."], new() { [".weight"] = ".gamma", [".bias"] = ".beta" });
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
        if (config.UsePooler)
        {
            map.Same("pooler.weight", "pooler.dense.weight");
            map.Same("pooler.bias", "pooler.dense.bias");
        }
        map.Same("classifier.weight", "classifier.weight");
        map.Same("classifier.bias", "classifier.bias");
        map.Ignore(name => name == "embeddings.position_ids");
        return map.Apply(model, stateDict, "BERT");
    }

    private static void LayerNorm(CheckpointMapping map, string ours, string theirs)
    {
        map.Same(ours + ".weight", theirs + ".weight");
        map.Same(ours + ".bias", theirs + ".bias");
    }

    private static void RequireShape(bool condition, string message, string parameter)
    {
        if (!condition) throw new ArgumentException(message + ".", parameter);
    }

    private static CheckpointLoadReport WithFile(string path, Func<IReadOnlyDictionary<string, Tensor>, CheckpointLoadReport> load)
    {
        Dictionary<string, Tensor> stateDict = StateDictFile.Read(path);
        try
        {
            return load(stateDict);
        }
        finally
        {
            foreach (Tensor t in stateDict.Values) t.Dispose();
        }
    }
}
