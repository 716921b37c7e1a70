using System.Text.Json.Nodes;
using KnowledgeDistillation.Formats;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// What a saved config.json keeps of the source folder's. A model of the source's very shape (the same model type
/// and every size field equal: the teacher itself, fine-tuned) keeps all of it. A model of another shape — a
/// student — keeps only the token ids and the task's labels: the rest of a teacher's config may describe the
/// teacher's shape (<c>layer_types</c> has one entry per layer, <c>max_window_layers</c> counts layers) and would be
/// wrong, or refused by transformers, for a shallower student.
/// </summary>
internal static class ConfigTemplate
{
    /// <summary>The fields of a source config.json that describe the tokenizer, whatever the model type.</summary>
    private static readonly string[] TokenFields = ["bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id"];

    /// <summary>The fields that also carry over from a source of the same model type but another shape: the task's labels.</summary>
    private static readonly string[] TaskFields = ["id2label", "label2id", "problem_type"];

    public static JsonObject? From(string? source, ModelFamily family, TransformerConfig config, string architecture)
    {
        string? path = source is null ? null : Path.Combine(source, HuggingFaceConfig.FileName);
        if (path is null || !File.Exists(path)) return null;
        JsonObject root = JsonFile.ReadObject(path);
        JsonObject ours = HuggingFaceConfig.Write(family, config, architecture, "float32", null);
        bool sameType = JsonNode.DeepEquals(root["model_type"], ours["model_type"]);
        // Fields the source leaves out take their defaults there; each field both give must agree.
        bool sameShape = sameType && ours.Where(p => p.Key is not ("architectures" or "torch_dtype" or "dtype") && root[p.Key] is not null).All(p => SameValue(root[p.Key], p.Value));
        if (sameShape) return root;
        var template = new JsonObject();
        foreach (string key in sameType ? TokenFields.Concat(TaskFields) : TokenFields)
        {
            if (root[key] is { } value) template[key] = value.DeepClone();
        }
        return template;
    }

    /// <summary>Whether a source field equals the one this model would write (numbers compared as numbers: 1e-05 and 0.00001 are equal).</summary>
    private static bool SameValue(JsonNode? source, JsonNode? ours) =>
        source is JsonValue a && ours is JsonValue b && a.TryGetValue(out double x) && b.TryGetValue(out double y) ? x == y : JsonNode.DeepEquals(source, ours);
}
