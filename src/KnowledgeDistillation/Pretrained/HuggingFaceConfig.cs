using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using KnowledgeDistillation.Formats;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Reads and writes Hugging Face <c>config.json</c> files through the family that owns the <c>model_type</c>. Size
/// fields are required; other fields take the Hugging Face default when absent (listed in the notes); a field whose
/// value changes the computation in a way this library does not implement gives a <see cref="NotSupportedException"/>
/// naming it.
/// </summary>
internal static class HuggingFaceConfig
{
    public const string FileName = "config.json";

    public static PretrainedConfig Read(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} has no {FileName}; a pretrained folder needs one.", path);
        var fields = new ConfigFields(path, JsonFile.ReadObject(path));
        string modelType = fields.String("model_type", null) ?? throw fields.Missing("model_type");
        ModelFamily? family = ModelFamilies.OfModelType(modelType);
        string? architecture = fields.FirstString("architectures");
        if (architecture is null)
        {
            if (family is null)
            {
                throw new NotSupportedException($"{path}: model_type \"{modelType}\" is not supported; supported: {string.Join(", ", ModelFamilies.ModelTypes)}.");
            }
            architecture = family.DefaultArchitectureOfModelType[modelType];
            fields.Notes.Add($"no architectures field: assumed {architecture} for model_type \"{modelType}\"");
        }
        if (!ModelFamilies.Architectures.Contains(architecture))
        {
            throw new NotSupportedException($"{path}: the architecture {architecture} (model_type \"{modelType}\") is not supported; supported: {string.Join(", ", ModelFamilies.Architectures)}.");
        }
        if (family is null || !family.Architectures.Contains(architecture))
        {
            throw new NotSupportedException($"{path}: model_type \"{modelType}\" does not match the architecture {architecture}.");
        }
        TransformerConfig config = family.ReadConfig(fields, architecture, modelType);
        try
        {
            config.Validate(); // here, before any model is built: sizes that cannot be allocated are refused with the file's field names
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {InFileTerms(e, family.FieldNames)}", e);
        }
        string? dtype = fields.String("torch_dtype", null) ?? fields.String("dtype", null);
        return new PretrainedConfig(architecture, modelType, config, dtype, fields.Notes);
    }

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

    /// <summary>The <c>config.json</c> of <paramref name="config"/> saved as <paramref name="architecture"/> by <paramref name="family"/>; <paramref name="template"/>'s other fields (token ids, labels) are kept.</summary>
    public static JsonObject Write(ModelFamily family, TransformerConfig config, string architecture, string dtype, JsonObject? template)
    {
        var root = template is null ? new JsonObject() : (JsonObject)template.DeepClone();
        root["architectures"] = new JsonArray(architecture);
        root["torch_dtype"] = dtype;
        root["dtype"] = dtype; // the field's name from transformers 4.56 on, read before torch_dtype: both say what was saved
        family.WriteConfig(config, root);
        return root;
    }
}
