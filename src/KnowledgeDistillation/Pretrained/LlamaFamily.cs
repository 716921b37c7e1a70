using System.Text.Json.Nodes;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>The Llama family (<c>LlamaForCausalLM</c>, <c>Qwen2ForCausalLM</c>, <c>MistralForCausalLM</c>) as <see cref="LlamaModel"/>.</summary>
internal sealed class LlamaFamily : ModelFamily
{
    public override string Name => "Llama-family";

    public override IReadOnlyDictionary<string, string> DefaultArchitectureOfModelType { get; } = new Dictionary<string, string>
    {
        ["llama"] = "LlamaForCausalLM", ["qwen2"] = "Qwen2ForCausalLM", ["mistral"] = "MistralForCausalLM",
    };

    public override IReadOnlyList<string> Architectures { get; } = ["LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"];

    public override Type ModelClass => typeof(LlamaModel);

    public override IReadOnlyDictionary<string, string> FieldNames { get; } = new Dictionary<string, string>
    {
        ["VocabSize"] = "vocab_size", ["ContextLength"] = "max_position_embeddings", ["Width"] = "hidden_size", ["Layers"] = "num_hidden_layers",
        ["Heads"] = "num_attention_heads", ["FeedForwardWidth"] = "intermediate_size", ["LayerNormEpsilon"] = "rms_norm_eps", ["Dropout"] = "attention_dropout",
        ["KeyValueHeads"] = "num_key_value_heads", ["HeadWidth"] = "head_dim", ["RopeTheta"] = "rope_theta", ["SlidingWindow"] = "sliding_window",
    };

    public override TransformerConfig ReadConfig(ConfigFields f, string architecture, string modelType)
    {
        if (f.Root["rope_scaling"] is JsonObject scaling)
        {
            string type = scaling["rope_type"]?.ToString() ?? scaling["type"]?.ToString() ?? "(no type)";
            if (type != "default")
            {
                throw new NotSupportedException($"{f.Path}: rope_scaling of type \"{type}\" is not supported; only unscaled rotary embeddings are (rope_scaling null or \"default\").");
            }
        }
        double partial = f.Double("partial_rotary_factor", 1.0, noted: false);
        if (partial != 1.0) throw new NotSupportedException($"{f.Path}: partial_rotary_factor {partial} is not supported; only 1.0 is.");
        DecoderFamily family = modelType switch { "qwen2" => DecoderFamily.Qwen2, "mistral" => DecoderFamily.Mistral, _ => DecoderFamily.Llama };
        int width = f.Int("hidden_size"), heads = f.Int("num_attention_heads");
        int headWidth = f.OptionalInt("head_dim") ?? 0;
        if (headWidth == width / heads && width % heads == 0) headWidth = 0;
        bool attentionBias = family == DecoderFamily.Llama && f.Bool("attention_bias", false);
        int? window = null;
        if (family == DecoderFamily.Mistral) window = f.OptionalInt("sliding_window");
        if (family == DecoderFamily.Qwen2 && f.Bool("use_sliding_window", false))
        {
            throw new NotSupportedException($"{f.Path}: use_sliding_window true is not supported for Qwen2 (its window applies to some layers only).");
        }
        f.Refuse("pretraining_tp", null, null, allowed: node => node.GetValue<int>() >= 1);
        return new LlamaConfig
        {
            Family = family,
            VocabSize = f.Int("vocab_size"),
            ContextLength = f.Int("max_position_embeddings", 2048),
            Width = width,
            Layers = f.Int("num_hidden_layers"),
            Heads = heads,
            KeyValueHeads = f.OptionalInt("num_key_value_heads") ?? 0,
            HeadWidth = headWidth,
            FeedForwardWidth = f.Int("intermediate_size"),
            Activation = f.Activation("hidden_act", "silu"),
            LayerNormEpsilon = f.Double("rms_norm_eps", 1e-6),
            RopeTheta = f.Double("rope_theta", 10_000),
            QueryKeyValueBias = family == DecoderFamily.Qwen2 || attentionBias,
            OutputBias = attentionBias,
            FeedForwardBias = family == DecoderFamily.Llama && f.Bool("mlp_bias", false),
            TieEmbeddings = f.Bool("tie_word_embeddings", false),
            SlidingWindow = window,
            Dropout = f.Double("attention_dropout", 0, noted: false),
        };
    }

    public override void WriteConfig(TransformerConfig config, JsonObject root)
    {
        var l = (LlamaConfig)config;
        Set(root, ("model_type", l.Family switch { DecoderFamily.Qwen2 => "qwen2", DecoderFamily.Mistral => "mistral", _ => "llama" }),
            ("vocab_size", l.VocabSize), ("max_position_embeddings", l.ContextLength), ("hidden_size", l.Width), ("intermediate_size", l.EffectiveFeedForwardWidth),
            ("num_hidden_layers", l.Layers), ("num_attention_heads", l.Heads), ("num_key_value_heads", l.EffectiveKeyValueHeads),
            ("head_dim", l.EffectiveHeadWidth), ("hidden_act", ActivationName(l.Activation, gpt: false)), ("rms_norm_eps", l.LayerNormEpsilon),
            ("rope_theta", l.RopeTheta), ("tie_word_embeddings", l.TieEmbeddings), ("attention_dropout", l.Dropout));
        root["rope_scaling"] = null;
        if (l.Family == DecoderFamily.Llama) Set(root, ("attention_bias", l.OutputBias), ("mlp_bias", l.FeedForwardBias));
        if (l.Family == DecoderFamily.Qwen2) Set(root, ("use_sliding_window", false));
        if (l.Family == DecoderFamily.Mistral) root["sliding_window"] = l.SlidingWindow;
    }

    public override nn.Module Build(TransformerConfig config) => new LlamaModel((LlamaConfig)config);

    public override TransformerConfig ConfigOf(nn.Module model) => ((LlamaModel)model).Config;

    public override WeightNameMapping Mapping(nn.Module model, string architecture) => HuggingFaceMappings.Llama(((LlamaModel)model).Config);

    public override string ArchitectureToSave(nn.Module model)
    {
        LlamaConfig c = ((LlamaModel)model).Config;
        switch (c.Family)
        {
            case DecoderFamily.Llama:
                if (c.QueryKeyValueBias != c.OutputBias) throw Unsupported("LlamaForCausalLM", "QueryKeyValueBias without OutputBias (Llama's attention_bias sets both; use DecoderFamily.Qwen2 for query/key/value biases alone)");
                if (c.SlidingWindow is not null) throw Unsupported("LlamaForCausalLM", "SlidingWindow (use DecoderFamily.Mistral)");
                return "LlamaForCausalLM";
            case DecoderFamily.Qwen2:
                if (!c.QueryKeyValueBias || c.OutputBias || c.FeedForwardBias) throw Unsupported("Qwen2ForCausalLM", "biases other than on query, key and value (Qwen2 has exactly those)");
                if (c.SlidingWindow is not null) throw Unsupported("Qwen2ForCausalLM", "SlidingWindow");
                return "Qwen2ForCausalLM";
            default:
                if (c.QueryKeyValueBias || c.OutputBias || c.FeedForwardBias) throw Unsupported("MistralForCausalLM", "biases (Mistral has none)");
                return "MistralForCausalLM";
        }
    }

    public override IEnumerable<(string Field, string Setting, object? InFile, object? InModel)> ComparedSettings(TransformerConfig inFile, TransformerConfig inModel)
    {
        LlamaConfig e = (LlamaConfig)inFile, m = (LlamaConfig)inModel;
        yield return ("num_key_value_heads", "KeyValueHeads", e.EffectiveKeyValueHeads, m.EffectiveKeyValueHeads);
        yield return ("head_dim", "HeadWidth", e.EffectiveHeadWidth, m.EffectiveHeadWidth);
        yield return ("rope_theta", "RopeTheta", e.RopeTheta, m.RopeTheta);
        yield return ("tie_word_embeddings", "TieEmbeddings", e.TieEmbeddings, m.TieEmbeddings);
        yield return ("the query/key/value bias", "QueryKeyValueBias", e.QueryKeyValueBias, m.QueryKeyValueBias);
        yield return ("the output bias", "OutputBias", e.OutputBias, m.OutputBias);
        yield return ("mlp_bias", "FeedForwardBias", e.FeedForwardBias, m.FeedForwardBias);
        yield return ("sliding_window", "SlidingWindow", e.SlidingWindow, m.SlidingWindow);
    }

    public override string AssumedSettings(TransformerConfig config) => $", TieEmbeddings = {((LlamaConfig)config).TieEmbeddings}";
}
