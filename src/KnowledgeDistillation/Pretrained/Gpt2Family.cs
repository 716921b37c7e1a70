using System.Text.Json.Nodes;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>GPT-2 (<c>GPT2LMHeadModel</c>, <c>GPT2Model</c>) as <see cref="GptModel"/>.</summary>
internal sealed class Gpt2Family : ModelFamily
{
    public override string Name => "GPT-2";

    public override IReadOnlyDictionary<string, string> DefaultArchitectureOfModelType { get; } = new Dictionary<string, string> { ["gpt2"] = "GPT2LMHeadModel" };

    public override IReadOnlyList<string> Architectures { get; } = ["GPT2LMHeadModel", "GPT2Model"];

    public override Type ModelClass => typeof(GptModel);

    public override IReadOnlyDictionary<string, string> FieldNames { get; } = new Dictionary<string, string>
    {
        ["VocabSize"] = "vocab_size", ["ContextLength"] = "n_positions", ["Width"] = "n_embd", ["Layers"] = "n_layer", ["Heads"] = "n_head",
        ["FeedForwardWidth"] = "n_inner", ["LayerNormEpsilon"] = "layer_norm_epsilon", ["Dropout"] = "resid_pdrop",
    };

    public override TransformerConfig ReadConfig(ConfigFields f, string architecture, string modelType)
    {
        f.Refuse("scale_attn_weights", false, "attention without the 1/√d scale");
        f.Refuse("scale_attn_by_inverse_layer_idx", true, "attention scaled by the inverse layer index");
        f.Refuse("add_cross_attention", true, "cross-attention");
        int? inner = f.OptionalInt("n_inner");
        return new GptConfig
        {
            VocabSize = f.Int("vocab_size"),
            ContextLength = f.Int("n_positions", 1024),
            Width = f.Int("n_embd"),
            Layers = f.Int("n_layer"),
            Heads = f.Int("n_head"),
            FeedForwardWidth = inner ?? 0,
            Activation = f.Activation("activation_function", "gelu_new"),
            LayerNormEpsilon = f.Double("layer_norm_epsilon", 1e-5),
            Dropout = f.Double("resid_pdrop", 0.1, noted: false),
            TieEmbeddings = f.Bool("tie_word_embeddings", true),
        };
    }

    public override void WriteConfig(TransformerConfig config, JsonObject root)
    {
        var g = (GptConfig)config;
        Set(root, ("model_type", "gpt2"), ("vocab_size", g.VocabSize), ("n_positions", g.ContextLength), ("n_embd", g.Width),
            ("n_layer", g.Layers), ("n_head", g.Heads), ("n_inner", g.EffectiveFeedForwardWidth),
            ("activation_function", ActivationName(g.Activation, gpt: true)), ("layer_norm_epsilon", g.LayerNormEpsilon),
            ("resid_pdrop", g.Dropout), ("embd_pdrop", g.Dropout), ("attn_pdrop", g.Dropout), ("tie_word_embeddings", g.TieEmbeddings),
            ("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false), ("add_cross_attention", false));
        root.Remove("n_ctx");
    }

    public override nn.Module Build(TransformerConfig config) => new GptModel((GptConfig)config);

    public override TransformerConfig ConfigOf(nn.Module model) => ((GptModel)model).Config;

    public override WeightNameMapping Mapping(nn.Module model, string architecture) => HuggingFaceMappings.Gpt2(((GptModel)model).Config);

    public override string ArchitectureToSave(nn.Module model)
    {
        if (((GptModel)model).Config.NormPlacement != NormPlacement.Pre) throw Unsupported("GPT2LMHeadModel", "NormPlacement.Post (GPT-2 is pre-norm)");
        return "GPT2LMHeadModel";
    }

    public override void RequireLoadable(nn.Module model)
    {
        if (((GptModel)model).Config.NormPlacement != NormPlacement.Pre)
        {
            throw new ArgumentException("GPT-2 checkpoints need a GptConfig with NormPlacement.Pre.", nameof(model));
        }
    }

    public override IEnumerable<(string Field, string Setting, object? InFile, object? InModel)> ComparedSettings(TransformerConfig inFile, TransformerConfig inModel)
    {
        GptConfig e = (GptConfig)inFile, m = (GptConfig)inModel;
        yield return ("n_positions", "ContextLength", e.ContextLength, m.ContextLength);
        yield return ("tie_word_embeddings", "TieEmbeddings", e.TieEmbeddings, m.TieEmbeddings);
    }

    public override string AssumedSettings(TransformerConfig config) => $", TieEmbeddings = {((GptConfig)config).TieEmbeddings}";
}
