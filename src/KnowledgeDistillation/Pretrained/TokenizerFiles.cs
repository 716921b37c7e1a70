using KnowledgeDistillation.Formats;
using System.Text.Json;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Models;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Checks a pretrained folder's tokenizer files before <c>Microsoft.ML.Tokenizers</c> reads them, so that a damaged
/// file is refused with its name, line or key and what is wrong — not with the package's own message, which names
/// neither — and so that nothing the package would accept silently (a negative id, a merge of unknown tokens) gets
/// through. Every file is read as untrusted input (bounded, see <see cref="JsonFile"/>).
/// </summary>
internal static class TokenizerFiles
{
    /// <summary>The special tokens BERT's tokenizer needs in <c>vocab.txt</c>.</summary>
    private static readonly string[] BertSpecials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"];

    /// <summary><c>vocab.json</c>: an object of token → id, each id an integer from 0 to 2³¹ − 2, no id given twice.</summary>
    public static Dictionary<string, int> ReadVocabJson(string path)
    {
        JsonObject root = JsonFile.ReadObject(path);
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        var owner = new Dictionary<int, string>();
        foreach ((string token, JsonNode? node) in root)
        {
            if (node is not JsonValue value || value.GetValueKind() != JsonValueKind.Number || !value.TryGetValue(out long id) || id < 0 || id >= int.MaxValue)
            {
                throw new InvalidDataException($"{path}: the id of \"{token}\" must be an integer from 0 to {int.MaxValue - 1}; got {node?.ToJsonString() ?? "null"}.");
            }
            if (owner.TryGetValue((int)id, out string? other)) throw new InvalidDataException($"{path}: \"{token}\" and \"{other}\" both have id {id}; each id must name one token.");
            owner[(int)id] = token;
            vocabulary[token] = (int)id;
        }
        if (vocabulary.Count == 0) throw new InvalidDataException($"{path} holds no tokens.");
        return vocabulary;
    }

    /// <summary><c>merges.txt</c>: after an optional <c>#version</c> line, each line two tokens separated by one space, both and their join in the vocabulary.</summary>
    public static void CheckMerges(string path, IReadOnlyDictionary<string, int> vocabulary)
    {
        byte[] bytes = JsonFile.ReadBounded(path);
        string[] lines = System.Text.Encoding.UTF8.GetString(bytes).Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimEnd('\r');
            if (line.Length == 0 || (i == 0 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            string[] parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
            {
                throw new InvalidDataException($"{path}, line {i + 1}: a merge is two tokens separated by one space; got \"{Shorten(line)}\".");
            }
            foreach (string token in new[] { parts[0], parts[1], parts[0] + parts[1] })
            {
                if (!vocabulary.ContainsKey(token)) throw new InvalidDataException($"{path}, line {i + 1}: \"{Shorten(token)}\" is not in vocab.json.");
            }
        }
    }

    /// <summary><c>vocab.txt</c>: one token per line, holding BERT's special tokens; returns the number of tokens.</summary>
    public static int CheckVocabTxt(string path)
    {
        string[] tokens = System.Text.Encoding.UTF8.GetString(JsonFile.ReadBounded(path)).Split('\n').Select(t => t.TrimEnd('\r')).ToArray();
        if (tokens.Length > 0 && tokens[^1].Length == 0) tokens = tokens[..^1]; // the file's final newline
        var present = new HashSet<string>(tokens, StringComparer.Ordinal);
        string[] missing = BertSpecials.Where(s => !present.Contains(s)).ToArray();
        if (missing.Length > 0) throw new InvalidDataException($"{path} lacks {string.Join(", ", missing)}, which a WordPiece (BERT) vocabulary must hold.");
        return tokens.Length;
    }

    /// <summary><c>tokenizer.model</c> must at least be non-empty; what the package then fails to read is wrapped with the file's name by the caller.</summary>
    public static void CheckSentencePiece(string path)
    {
        if (new FileInfo(path).Length == 0) throw new InvalidDataException($"{path} is empty; a SentencePiece model (a serialised ModelProto) was expected.");
    }

    /// <summary>Runs the package's reader, turning any failure into an <see cref="InvalidDataException"/> naming the file.</summary>
    public static T Read<T>(string path, string what, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception e) when (e is not InvalidDataException and not OutOfMemoryException)
        {
            throw new InvalidDataException($"{path} could not be read as {what}: {e.Message}", e);
        }
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "…";
}

/// <summary>
/// <c>tokenizer_config.json</c>, then <c>special_tokens_map.json</c>, then <c>config.json</c>, merged (earlier files
/// win), remembering which file gave each field so that a field of the wrong type is named with its file.
/// </summary>
internal sealed class TokenizerSettings
{
    private readonly Dictionary<string, string> _origin = new(StringComparer.Ordinal);

    public TokenizerSettings(string folder)
    {
        foreach (string name in new[] { "tokenizer_config.json", "special_tokens_map.json", "config.json" })
        {
            string path = Path.Combine(folder, name);
            if (!File.Exists(path)) continue;
            foreach ((string key, JsonNode? value) in JsonFile.ReadObject(path))
            {
                if (Values.ContainsKey(key)) continue;
                Values[key] = value?.DeepClone();
                _origin[key] = path;
            }
        }
    }

    public JsonObject Values { get; } = [];

    /// <summary>A true/false field, or <paramref name="fallback"/> when absent or null.</summary>
    public bool Flag(string name, bool fallback)
    {
        JsonNode? node = Values[name];
        if (node is null) return fallback;
        if (node is JsonValue value && value.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return value.GetValue<bool>();
        throw new InvalidDataException($"{_origin[name]}: \"{name}\" must be true or false; got {node.ToJsonString()}.");
    }

    /// <summary>A string field (such as <c>tokenizer_class</c>), or null when absent.</summary>
    public string? Text(string name)
    {
        JsonNode? node = Values[name];
        if (node is null) return null;
        if (node is JsonValue value && value.GetValueKind() == JsonValueKind.String) return value.GetValue<string>();
        throw new InvalidDataException($"{_origin[name]}: \"{name}\" must be a string; got {node.ToJsonString()}.");
    }
}
