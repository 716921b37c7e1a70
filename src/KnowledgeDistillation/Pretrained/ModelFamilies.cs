using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>The registry of supported Hugging Face families: the one list every loader, writer and check reads.</summary>
internal static class ModelFamilies
{
    public static IReadOnlyList<ModelFamily> All { get; } = [new Gpt2Family(), new BertFamily(), new LlamaFamily()];

    public static IEnumerable<string> Architectures => All.SelectMany(f => f.Architectures);

    public static IEnumerable<string> ModelTypes => All.SelectMany(f => f.DefaultArchitectureOfModelType.Keys);

    public static ModelFamily? OfModelType(string modelType) => All.FirstOrDefault(f => f.DefaultArchitectureOfModelType.ContainsKey(modelType));

    /// <summary>The family that builds <paramref name="model"/>'s class.</summary>
    /// <exception cref="NotSupportedException">No family does (the message names the classes that have one).</exception>
    public static ModelFamily Of(nn.Module model) =>
        All.FirstOrDefault(f => f.Builds(model))
        ?? throw new NotSupportedException($"{model.GetType().Name} has no Hugging Face layout; {string.Join(", ", All.Select(f => f.ModelClass.Name))} do.");

    /// <summary>The family whose model class is <paramref name="modelClass"/>, or null.</summary>
    public static ModelFamily? OfClass(Type modelClass) => All.FirstOrDefault(f => f.ModelClass == modelClass);
}
