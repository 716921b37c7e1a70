using System.Text.Json;
using System.Text.Json.Nodes;

namespace KnowledgeDistillation.Formats;

/// <summary>
/// Reads the small JSON files of model and tokenizer folders (<c>config.json</c>, <c>tokenizer_config.json</c>, index
/// files, manifests) as untrusted input: at most <see cref="MaxBytes"/> are read (a path that is a link to
/// <c>/dev/zero</c> cannot make the reader run forever), a property given twice in one object is refused (readers
/// disagree on which one wins), and every failure is an <see cref="InvalidDataException"/> naming the file.
/// </summary>
internal static class JsonFile
{
    /// <summary>The largest JSON file read: far above any real configuration or tokenizer file (GPT-2's vocab.json is 1 MB).</summary>
    public const long MaxBytes = 256L << 20;

    /// <summary>The file's top-level object.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">It is too large, not UTF-8 JSON, not an object, or repeats a property.</exception>
    public static JsonObject ReadObject(string path)
    {
        byte[] bytes = ReadBounded(path);
        try
        {
            using (JsonDocument document = JsonDocument.Parse(bytes))
            {
                if (document.RootElement.ValueKind != JsonValueKind.Object)
                {
                    throw new InvalidDataException($"{path} must hold a JSON object; it holds {Describe(document.RootElement.ValueKind)}.");
                }
                RequireUniqueProperties(document.RootElement, path, "");
            }
            return (JsonObject)JsonNode.Parse(bytes)!;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>The file's bytes, refusing more than <see cref="MaxBytes"/> (read in one pass, so devices and pipes are bounded too).</summary>
    public static byte[] ReadBounded(string path, long maxBytes = MaxBytes)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} does not exist.", path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int read;
        while ((read = stream.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (buffer.Length + read > maxBytes) throw new InvalidDataException($"{path} is larger than {maxBytes >> 20} MiB; it is not the small file expected there.");
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private static void RequireUniqueProperties(JsonElement element, string path, string where)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (JsonProperty property in element.EnumerateObject())
                {
                    string at = where.Length == 0 ? property.Name : $"{where}.{property.Name}";
                    if (!seen.Add(property.Name)) throw new InvalidDataException($"{path} gives \"{at}\" twice; a property must appear once.");
                    RequireUniqueProperties(property.Value, path, at);
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (JsonElement item in element.EnumerateArray()) RequireUniqueProperties(item, path, $"{where}[{i++}]");
                break;
        }
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };
}
