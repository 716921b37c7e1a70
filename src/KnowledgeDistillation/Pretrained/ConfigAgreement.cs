using System.Globalization;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Checks a model's configuration against the <c>config.json</c> beside a checkpoint: a checkpoint loaded into a model
/// that computes differently (another layer-norm ε, activation or tying) gives other outputs without any shape
/// error, so those settings are compared, not just shapes.
/// </summary>
internal static class ConfigAgreement
{
    public static List<string> Check(ModelFamily family, PretrainedConfig file, TransformerConfig model)
    {
        TransformerConfig expected = file.Config;
        string path = HuggingFaceConfig.FileName;
        if (expected.GetType() != model.GetType())
        {
            throw new InvalidDataException($"The checkpoint's {path} describes {file.Architecture} (model_type \"{file.ModelType}\"), which is not a {model.GetType().Name} model.");
        }
        var differences = new List<string>();
        void Compare<T>(string field, string setting, T inFile, T inModel)
        {
            if (!Equals(inFile, inModel)) differences.Add($"{field} is {Show(inFile)} in {path} but {setting} is {Show(inModel)} in the model");
        }
        Compare("vocab_size", "VocabSize", expected.VocabSize, model.VocabSize);
        Compare("the hidden width", "Width", expected.Width, model.Width);
        Compare("the head count", "Heads", expected.Heads, model.Heads);
        Compare("the layer count", "Layers", expected.Layers, model.Layers);
        Compare("the feed-forward width", "FeedForwardWidth", expected.EffectiveFeedForwardWidth, model.EffectiveFeedForwardWidth);
        Compare("the activation", "Activation", expected.Activation, model.Activation);
        Compare("the layer norm ε", "LayerNormEpsilon", expected.LayerNormEpsilon, model.LayerNormEpsilon);
        foreach ((string field, string setting, object? inFile, object? inModel) in family.ComparedSettings(expected, model))
        {
            Compare(field, setting, inFile, inModel);
        }
        if (differences.Count > 0)
        {
            throw new InvalidDataException(
                $"The checkpoint's {path} does not match the model's configuration (the model was not changed): {string.Join("; ", differences)}. " +
                "Build the model from the file with PretrainedFolder.Load, or configure it to match.");
        }
        return [$"checked the model's configuration against {path} ({file.Architecture})"];
    }

    public static List<string> Assumed(ModelFamily family, TransformerConfig model)
    {
        string eps = model.LayerNormEpsilon.ToString("G", CultureInfo.InvariantCulture);
        string tie = family.AssumedSettings(model);
        return [$"no {HuggingFaceConfig.FileName} beside the checkpoint: assumed the model's own settings for what shapes cannot show (LayerNormEpsilon = {eps}, Activation = {model.Activation}{tie})"];
    }

    public static IEnumerable<string> DtypeNotes(IEnumerable<Tensor> tensors) =>
        tensors.Where(t => is_floating_point(t) && t.dtype != ScalarType.Float32).Select(t => t.dtype).Distinct()
            .Select(d => $"weights stored as {d} were converted to the model's dtype");

    private static string Show<T>(T value) => value switch
    {
        double d => d.ToString("G", CultureInfo.InvariantCulture),
        null => "null",
        _ => value.ToString()!,
    };
}
