using System.Text.Json.Nodes;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Everything this library knows about one Hugging Face model family, in one place: which <c>model_type</c>s and
/// architectures it covers, how its <c>config.json</c> reads and writes, which reference model it builds, how that
/// model's parameter names map to the family's, and which of the model's settings a save cannot express. Adding an
/// architecture means adding a family to <see cref="ModelFamilies.All"/>, nothing else.
/// </summary>
internal abstract class ModelFamily
{
    /// <summary>The family's name in messages ("GPT-2").</summary>
    public abstract string Name { get; }

    /// <summary>The <c>model_type</c> values of the family, each with the architecture assumed when <c>architectures</c> is absent.</summary>
    public abstract IReadOnlyDictionary<string, string> DefaultArchitectureOfModelType { get; }

    /// <summary>The Hugging Face classes that load into this family's model.</summary>
    public abstract IReadOnlyList<string> Architectures { get; }

    /// <summary>The reference model class the family builds.</summary>
    public abstract Type ModelClass { get; }

    /// <summary>The config.json field behind each configuration property (to name the file's field in errors).</summary>
    public abstract IReadOnlyDictionary<string, string> FieldNames { get; }

    /// <summary>The configuration a <c>config.json</c> describes, its unsupported settings refused by name.</summary>
    public abstract TransformerConfig ReadConfig(ConfigFields fields, string architecture, string modelType);

    /// <summary>Sets the family's fields of <paramref name="root"/> from <paramref name="config"/>.</summary>
    public abstract void WriteConfig(TransformerConfig config, JsonObject root);

    public abstract nn.Module Build(TransformerConfig config);

    /// <summary>The configuration of <paramref name="model"/>, a model of this family.</summary>
    public abstract TransformerConfig ConfigOf(nn.Module model);

    /// <summary>The family's parameter names for <paramref name="model"/> saved or loaded as <paramref name="architecture"/>.</summary>
    public abstract WeightNameMapping Mapping(nn.Module model, string architecture);

    /// <summary>The architecture <paramref name="model"/> saves as.</summary>
    /// <exception cref="NotSupportedException">A setting of the model has no equivalent in the family (the message names it).</exception>
    public abstract string ArchitectureToSave(nn.Module model);

    /// <summary>Whether a saved <paramref name="architecture"/> holds the tensor <paramref name="name"/> (a Hugging Face class may lack a part our model has).</summary>
    public virtual bool Saves(string name, string architecture) => true;

    /// <summary>Throws when <paramref name="model"/> cannot hold the family's weights at all (another norm placement).</summary>
    public virtual void RequireLoadable(nn.Module model)
    {
    }

    /// <summary>The family's own settings that shapes cannot show, compared by <see cref="ConfigAgreement"/>: (field, property, in the file, in the model).</summary>
    public abstract IEnumerable<(string Field, string Setting, object? InFile, object? InModel)> ComparedSettings(TransformerConfig inFile, TransformerConfig inModel);

    /// <summary>What a load without <c>config.json</c> assumes beyond ε and the activation (e.g. <c>, TieEmbeddings = true</c>), or "".</summary>
    public virtual string AssumedSettings(TransformerConfig config) => "";

    public bool Builds(nn.Module model) => ModelClass.IsInstanceOfType(model);

    protected static NotSupportedException Unsupported(string architecture, string setting) =>
        new($"The model cannot be saved as {architecture}: {setting}. Nothing was written.");

    protected static string ActivationName(FeedForwardActivation activation, bool gpt) => activation switch
    {
        FeedForwardActivation.Gelu => "gelu",
        FeedForwardActivation.GeluTanh => gpt ? "gelu_new" : "gelu_pytorch_tanh",
        FeedForwardActivation.Silu => "silu",
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, null),
    };

    protected static void Set(JsonObject root, params (string Key, JsonNode? Value)[] values)
    {
        foreach ((string key, JsonNode? value) in values) root[key] = value;
    }
}
