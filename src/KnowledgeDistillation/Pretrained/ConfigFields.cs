using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>Typed access to config fields with errors that name the file and the field.</summary>
internal sealed class ConfigFields(string path, JsonObject root)
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
