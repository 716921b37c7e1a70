using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Reads and writes Hugging Face <c>config.json</c> files for the supported architectures. Size fields are required;
/// other fields take the Hugging Face default when absent (listed in the notes); a field whose value changes the
/// computation in a way this library does not implement gives a <see cref="NotSupportedException"/> naming it.
/// </summary>
internal static class HuggingFaceConfig
{
    public const string FileName = "config.json";

    public static readonly IReadOnlyDictionary<string, string> ArchitectureOfModelType = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["gpt2"] = "GPT2LMHeadModel", ["bert"] = "BertForSequenceClassification", ["llama"] = "LlamaForCausalLM",
        ["qwen2"] = "Qwen2ForCausalLM", ["mistral"] = "MistralForCausalLM",
    };

    public static readonly IReadOnlyList<string> SupportedArchitectures =
    [
        "GPT2LMHeadModel", "GPT2Model", "BertModel", "BertForSequenceClassification", "BertForMaskedLM", "BertForPreTraining",
        "LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM",
    ];

    public static PretrainedConfig Read(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} has no {FileName}; a pretrained folder needs one.", path);
        JsonObject root = JsonFile.ReadObject(path);
        var fields = new Fields(path, root);
        string modelType = fields.String("model_type", null) ?? throw fields.Missing("model_type");
        string? architecture = fields.FirstString("architectures");
        if (architecture is null)
        {
            if (!ArchitectureOfModelType.TryGetValue(modelType, out architecture))
            {
                throw new NotSupportedException($"{path}: model_type \"{modelType}\" is not supported; supported: {string.Join(", ", ArchitectureOfModelType.Keys)}.");
            }
            fields.Notes.Add($"no architectures field: assumed {architecture} for model_type \"{modelType}\"");
        }
        if (!SupportedArchitectures.Contains(architecture))
        {
            throw new NotSupportedException($"{path}: the architecture {architecture} (model_type \"{modelType}\") is not supported; supported: {string.Join(", ", SupportedArchitectures)}.");
        }
        TransformerConfig config = modelType switch
        {
            "gpt2" => Gpt2(fields),
            "bert" => Bert(fields, architecture),
            "llama" or "qwen2" or "mistral" => Llama(fields, modelType),
            _ => throw new NotSupportedException($"{path}: model_type \"{modelType}\" does not match the architecture {architecture}."),
        };
        try
        {
            config.Validate(); // here, before any model is built: sizes that cannot be allocated are refused with the file's field names
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {InFileTerms(e, FieldNames(modelType))}", e);
        }
        string? dtype = fields.String("torch_dtype", null) ?? fields.String("dtype", null);
        return new PretrainedConfig(architecture, modelType, config, dtype, fields.Notes);
    }

    private static GptConfig Gpt2(Fields f)
    {
        f.Refuse("scale_attn_weights", false, "attention without the 1/√d scale");
        f.Refuse("scale_attn_by_inverse_layer_idx", true, "attention scaled by the inverse layer index");
        f.Refuse("add_cross_attention", true, "cross-attention");
        int width = f.Int("n_embd");
        int? inner = f.OptionalInt("n_inner");
        return new GptConfig
        {
            VocabSize = f.Int("vocab_size"),
            ContextLength = f.Int("n_positions", 1024),
            Width = width,
            Layers = f.Int("n_layer"),
            Heads = f.Int("n_head"),
            FeedForwardWidth = inner ?? 0,
            Activation = f.Activation("activation_function", "gelu_new"),
            LayerNormEpsilon = f.Double("layer_norm_epsilon", 1e-5),
            Dropout = f.Double("resid_pdrop", 0.1, noted: false),
            TieEmbeddings = f.Bool("tie_word_embeddings", true),
        };
    }

    private static BertConfig Bert(Fields f, string architecture)
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

    private static LlamaConfig Llama(Fields f, string modelType)
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

    /// <summary>The config.json field behind each configuration property, per model type (to name the file's field in errors).</summary>
    private static IReadOnlyDictionary<string, string> FieldNames(string modelType) => modelType switch
    {
        "gpt2" => new Dictionary<string, string>
        {
            ["VocabSize"] = "vocab_size", ["ContextLength"] = "n_positions", ["Width"] = "n_embd", ["Layers"] = "n_layer", ["Heads"] = "n_head",
            ["FeedForwardWidth"] = "n_inner", ["LayerNormEpsilon"] = "layer_norm_epsilon", ["Dropout"] = "resid_pdrop",
        },
        "bert" => new Dictionary<string, string>
        {
            ["VocabSize"] = "vocab_size", ["ContextLength"] = "max_position_embeddings", ["Width"] = "hidden_size", ["Layers"] = "num_hidden_layers",
            ["Heads"] = "num_attention_heads", ["FeedForwardWidth"] = "intermediate_size", ["LayerNormEpsilon"] = "layer_norm_eps", ["Dropout"] = "hidden_dropout_prob",
            ["TypeVocabSize"] = "type_vocab_size", ["NumLabels"] = "id2label (or num_labels)",
        },
        _ => new Dictionary<string, string>
        {
            ["VocabSize"] = "vocab_size", ["ContextLength"] = "max_position_embeddings", ["Width"] = "hidden_size", ["Layers"] = "num_hidden_layers",
            ["Heads"] = "num_attention_heads", ["FeedForwardWidth"] = "intermediate_size", ["LayerNormEpsilon"] = "rms_norm_eps", ["Dropout"] = "attention_dropout",
            ["KeyValueHeads"] = "num_key_value_heads", ["HeadWidth"] = "head_dim", ["RopeTheta"] = "rope_theta", ["SlidingWindow"] = "sliding_window",
        },
    };

    /// <summary>A configuration error in the file's own terms: each property name replaced by its config.json field.</summary>
    private static string InFileTerms(ArgumentException e, IReadOnlyDictionary<string, string> fields)
    {
        string message = e.Message;
        int suffix = message.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
        if (suffix >= 0) message = message[..suffix];
        foreach ((string property, string field) in fields) message = Regex.Replace(message, $@"\b{property}\b", field);
        if (e.ParamName is { } name && fields.TryGetValue(name, out string? named) && !message.Contains(named, StringComparison.Ordinal)) message += $" (field {named})";
        return message;
    }

    /// <summary>The <c>config.json</c> of <paramref name="config"/> saved as <paramref name="architecture"/>; <paramref name="template"/>'s other fields (token ids, labels) are kept.</summary>
    public static JsonObject Write(TransformerConfig config, string architecture, string dtype, JsonObject? template)
    {
        var root = template is null ? new JsonObject() : (JsonObject)template.DeepClone();
        root["architectures"] = new JsonArray(architecture);
        root["torch_dtype"] = dtype;
        root["dtype"] = dtype; // the field's name from transformers 4.56 on, read before torch_dtype: both say what was saved
        switch (config)
        {
            case GptConfig g:
                Set(root, ("model_type", "gpt2"), ("vocab_size", g.VocabSize), ("n_positions", g.ContextLength), ("n_embd", g.Width),
                    ("n_layer", g.Layers), ("n_head", g.Heads), ("n_inner", g.EffectiveFeedForwardWidth),
                    ("activation_function", ActivationName(g.Activation, gpt: true)), ("layer_norm_epsilon", g.LayerNormEpsilon),
                    ("resid_pdrop", g.Dropout), ("embd_pdrop", g.Dropout), ("attn_pdrop", g.Dropout), ("tie_word_embeddings", g.TieEmbeddings),
                    ("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false), ("add_cross_attention", false));
                root.Remove("n_ctx");
                break;
            case BertConfig b:
                Set(root, ("model_type", "bert"), ("vocab_size", b.VocabSize), ("max_position_embeddings", b.ContextLength), ("hidden_size", b.Width),
                    ("num_hidden_layers", b.Layers), ("num_attention_heads", b.Heads), ("intermediate_size", b.EffectiveFeedForwardWidth),
                    ("hidden_act", ActivationName(b.Activation, gpt: false)), ("layer_norm_eps", b.LayerNormEpsilon), ("hidden_dropout_prob", b.Dropout),
                    ("attention_probs_dropout_prob", b.Dropout), ("type_vocab_size", b.TypeVocabSize), ("position_embedding_type", "absolute"),
                    ("is_decoder", false));
                if (b.Head == BertHead.SequenceClassification)
                {
                    if (root["id2label"] is not JsonObject labels || labels.Count != b.NumLabels)
                    {
                        root["id2label"] = new JsonObject(Enumerable.Range(0, b.NumLabels).Select(i => KeyValuePair.Create(i.ToString(CultureInfo.InvariantCulture), (JsonNode?)$"LABEL_{i}")));
                        root["label2id"] = new JsonObject(Enumerable.Range(0, b.NumLabels).Select(i => KeyValuePair.Create($"LABEL_{i}", (JsonNode?)i)));
                    }
                    root.Remove("num_labels");
                }
                break;
            case LlamaConfig l:
                Set(root, ("model_type", l.Family switch { DecoderFamily.Qwen2 => "qwen2", DecoderFamily.Mistral => "mistral", _ => "llama" }),
                    ("vocab_size", l.VocabSize), ("max_position_embeddings", l.ContextLength), ("hidden_size", l.Width), ("intermediate_size", l.EffectiveFeedForwardWidth),
                    ("num_hidden_layers", l.Layers), ("num_attention_heads", l.Heads), ("num_key_value_heads", l.EffectiveKeyValueHeads),
                    ("head_dim", l.EffectiveHeadWidth), ("hidden_act", ActivationName(l.Activation, gpt: false)), ("rms_norm_eps", l.LayerNormEpsilon),
                    ("rope_theta", l.RopeTheta), ("tie_word_embeddings", l.TieEmbeddings), ("attention_dropout", l.Dropout));
                root["rope_scaling"] = null;
                if (l.Family == DecoderFamily.Llama) Set(root, ("attention_bias", l.OutputBias), ("mlp_bias", l.FeedForwardBias));
                if (l.Family == DecoderFamily.Qwen2) Set(root, ("use_sliding_window", false));
                if (l.Family == DecoderFamily.Mistral) root["sliding_window"] = l.SlidingWindow;
                break;
            default:
                throw new NotSupportedException($"No config.json layout for {config.GetType().Name}.");
        }
        return root;
    }

    private static string ActivationName(FeedForwardActivation activation, bool gpt) => activation switch
    {
        FeedForwardActivation.Gelu => "gelu",
        FeedForwardActivation.GeluTanh => gpt ? "gelu_new" : "gelu_pytorch_tanh",
        FeedForwardActivation.Silu => "silu",
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, null),
    };

    private static void Set(JsonObject root, params (string Key, JsonNode? Value)[] values)
    {
        foreach ((string key, JsonNode? value) in values) root[key] = value;
    }

    /// <summary>Typed access to config fields with errors that name the file and the field.</summary>
    private sealed class Fields(string path, JsonObject root)
    {
        public string Path { get; } = path;
        public JsonObject Root { get; } = root;
        public List<string> Notes { get; } = [];

        public InvalidDataException Missing(string name) => new($"{Path} has no \"{name}\" field, which this architecture requires.");

        public int Int(string name, int? fallback = null)
        {
            if (OptionalInt(name) is { } value) return value;
            if (fallback is null) throw Missing(name);
            Notes.Add($"{name} absent: took the default {fallback}");
            return fallback.Value;
        }

        public int? OptionalInt(string name) => TryGet(name, node => node.GetValue<int>(), "an integer", out int value) ? value : null;

        /// <summary>A number; an absent one takes <paramref name="fallback"/>, noted when it changes results (<paramref name="noted"/>).</summary>
        public double Double(string name, double fallback, bool noted = true)
        {
            if (TryGet(name, node => node.GetValue<double>(), "a number", out double value)) return value;
            if (noted) Notes.Add($"{name} absent: took the default {fallback.ToString(CultureInfo.InvariantCulture)}");
            return fallback;
        }

        public bool Bool(string name, bool fallback) => TryGet(name, node => node.GetValue<bool>(), "true or false", out bool value) ? value : fallback;

        public string? String(string name, string? fallback) => TryGet(name, node => node.GetValue<string>(), "a string", out string? value) ? value : fallback;

        /// <summary>The first entry of a list of strings (such as <c>architectures</c>), or null when the field is absent or empty.</summary>
        public string? FirstString(string name) =>
            TryGet(name, node => node.AsArray().Select(item => item?.GetValue<string>() ?? throw new InvalidOperationException("null entry")).FirstOrDefault(), "a list of strings", out string? value) ? value : null;

        public FeedForwardActivation Activation(string name, string fallback)
        {
            string value = String(name, fallback)!;
            return value switch
            {
                "gelu" => FeedForwardActivation.Gelu,
                "gelu_new" or "gelu_pytorch_tanh" => FeedForwardActivation.GeluTanh,
                "silu" or "swish" => FeedForwardActivation.Silu,
                _ => throw new NotSupportedException($"{Path}: {name} \"{value}\" is not supported; supported: gelu, gelu_new, gelu_pytorch_tanh, silu."),
            };
        }

        /// <summary>Throws when the field is present with <paramref name="unsupported"/> (or fails <paramref name="allowed"/>).</summary>
        public void Refuse(string name, object? unsupported, string? what, Func<JsonNode, bool>? allowed = null)
        {
            JsonNode? node = Root[name];
            if (node is null) return;
            bool bad = allowed is not null ? !allowed(node) : node.ToJsonString() == JsonSerializer.Serialize(unsupported);
            if (bad) throw new NotSupportedException($"{Path}: {name} = {node.ToJsonString()} is not supported{(what is null ? "" : $" ({what})")}.");
        }

        private bool TryGet<T>(string name, Func<JsonNode, T> read, string expected, out T value)
        {
            value = default!;
            JsonNode? node = Root[name];
            if (node is null) return false;
            try
            {
                value = read(node);
                return true;
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{Path}: \"{name}\" must be {expected}; got {node.ToJsonString()}.", e);
            }
        }
    }
}
