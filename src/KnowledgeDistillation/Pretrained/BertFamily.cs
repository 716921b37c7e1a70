using System.Globalization;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// BERT (<c>BertModel</c>, <c>BertForSequenceClassification</c>, <c>BertForMaskedLM</c>, <c>BertForPreTraining</c>
/// loaded with its masked-LM head) as <see cref="BertModel"/>.
/// </summary>
internal sealed class BertFamily : ModelFamily
{
    public override string Name => "BERT";

    public override IReadOnlyDictionary<string, string> DefaultArchitectureOfModelType { get; } = new Dictionary<string, string> { ["bert"] = "BertForSequenceClassification" };

    public override IReadOnlyList<string> Architectures { get; } = ["BertModel", "BertForSequenceClassification", "BertForMaskedLM", "BertForPreTraining"];

    public override Type ModelClass => typeof(BertModel);

    public override IReadOnlyDictionary<string, string> FieldNames { get; } = new Dictionary<string, string>
    {
        ["VocabSize"] = "vocab_size", ["ContextLength"] = "max_position_embeddings", ["Width"] = "hidden_size", ["Layers"] = "num_hidden_layers",
        ["Heads"] = "num_attention_heads", ["FeedForwardWidth"] = "intermediate_size", ["LayerNormEpsilon"] = "layer_norm_eps", ["Dropout"] = "hidden_dropout_prob",
        ["TypeVocabSize"] = "type_vocab_size", ["NumLabels"] = "id2label (or num_labels)",
    };

    public override TransformerConfig ReadConfig(ConfigFields f, string architecture, string modelType)
    {
        f.Refuse("is_decoder", true, "a causal BERT decoder");
        f.Refuse("add_cross_attention", true, "cross-attention");
        string positions = f.String("position_embedding_type", "absolute")!;
        if (positions != "absolute") throw new NotSupportedException($"{f.Path}: position_embedding_type \"{positions}\" is not supported; only \"absolute\" is.");
        int labels = f.Root["id2label"] is JsonObject id2label ? id2label.Count : f.Int("num_labels", 2);
        (BertHead head, bool pooler) = architecture switch
        {
            "BertForSequenceClassification" => (BertHead.SequenceClassification, true),
            "BertForMaskedLM" or "BertForPreTraining" => (BertHead.MaskedLM, false),
            _ => (BertHead.None, false),
        };
        return new BertConfig
        {
            VocabSize = f.Int("vocab_size"),
            ContextLength = f.Int("max_position_embeddings", 512),
            Width = f.Int("hidden_size"),
            Layers = f.Int("num_hidden_layers"),
            Heads = f.Int("num_attention_heads"),
            FeedForwardWidth = f.Int("intermediate_size"),
            Activation = f.Activation("hidden_act", "gelu"),
            LayerNormEpsilon = f.Double("layer_norm_eps", 1e-12),
            Dropout = f.Double("hidden_dropout_prob", 0.1, noted: false),
            TypeVocabSize = f.Int("type_vocab_size", 2),
            NumLabels = labels,
            Head = head,
            UsePooler = pooler,
        };
    }

    public override void WriteConfig(TransformerConfig config, JsonObject root)
    {
        var b = (BertConfig)config;
        Set(root, ("model_type", "bert"), ("vocab_size", b.VocabSize), ("max_position_embeddings", b.ContextLength), ("hidden_size", b.Width),
            ("num_hidden_layers", b.Layers), ("num_attention_heads", b.Heads), ("intermediate_size", b.EffectiveFeedForwardWidth),
            ("hidden_act", ActivationName(b.Activation, gpt: false)), ("layer_norm_eps", b.LayerNormEpsilon), ("hidden_dropout_prob", b.Dropout),
            ("attention_probs_dropout_prob", b.Dropout), ("type_vocab_size", b.TypeVocabSize), ("position_embedding_type", "absolute"),
            ("is_decoder", false));
        if (b.Head != BertHead.SequenceClassification) return;
        if (root["id2label"] is not JsonObject labels || labels.Count != b.NumLabels)
        {
            root["id2label"] = new JsonObject(Enumerable.Range(0, b.NumLabels).Select(i => KeyValuePair.Create(i.ToString(CultureInfo.InvariantCulture), (JsonNode?)$"LABEL_{i}")));
            root["label2id"] = new JsonObject(Enumerable.Range(0, b.NumLabels).Select(i => KeyValuePair.Create($"LABEL_{i}", (JsonNode?)i)));
        }
        root.Remove("num_labels");
    }

    public override nn.Module Build(TransformerConfig config) => new BertModel((BertConfig)config);

    public override TransformerConfig ConfigOf(nn.Module model) => ((BertModel)model).Config;

    public override WeightNameMapping Mapping(nn.Module model, string architecture) =>
        HuggingFaceMappings.Bert(((BertModel)model).Config, bareEncoder: architecture == "BertModel");

    public override string ArchitectureToSave(nn.Module model)
    {
        BertConfig c = ((BertModel)model).Config;
        if (c.NormPlacement != NormPlacement.Post) throw Unsupported("BERT", "NormPlacement.Pre (BERT is post-norm)");
        if (c.Head == BertHead.SequenceClassification && !c.UsePooler)
        {
            throw Unsupported("BertForSequenceClassification", "UsePooler = false (its classifier always reads the pooler); keep the pooler, or save the encoder with Head = BertHead.None");
        }
        return c.Head switch { BertHead.SequenceClassification => "BertForSequenceClassification", BertHead.MaskedLM => "BertForMaskedLM", _ => "BertModel" };
    }

    /// <summary>
    /// Hugging Face's BertForMaskedLM has no pooler (its masked-LM head never reads it): writing ours would leave weights
    /// transformers reports as unused.
    /// </summary>
    public override bool Saves(string name, string architecture) =>
        !(architecture == "BertForMaskedLM" && name.StartsWith("bert.pooler.", StringComparison.Ordinal));

    public override void RequireLoadable(nn.Module model)
    {
        if (((BertModel)model).Config.NormPlacement != NormPlacement.Post)
        {
            throw new ArgumentException("BERT checkpoints need a BertConfig with NormPlacement.Post.", nameof(model));
        }
    }

    public override IEnumerable<(string Field, string Setting, object? InFile, object? InModel)> ComparedSettings(TransformerConfig inFile, TransformerConfig inModel)
    {
        BertConfig e = (BertConfig)inFile, m = (BertConfig)inModel;
        yield return ("max_position_embeddings", "ContextLength", e.ContextLength, m.ContextLength);
        yield return ("type_vocab_size", "TypeVocabSize", e.TypeVocabSize, m.TypeVocabSize);
    }
}
