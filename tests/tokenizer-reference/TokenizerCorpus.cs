using System.Text.Json;

namespace KnowledgeDistillation.TokenizerReference;

/// <summary>
/// Reads corpus.json (written by build_corpus.mjs): <c>{"texts": [...]}</c>, each text a string or, where it holds a lone
/// surrogate no JSON reader here accepts in a string, an array of its UTF-16 code units. Linked into the tests and the benchmarks.
/// </summary>
internal static class TokenizerCorpus
{
    public static string[] Read(string path)
    {
        using JsonDocument corpus = JsonDocument.Parse(File.ReadAllBytes(path));
        return corpus.RootElement.GetProperty("texts").EnumerateArray()
            .Select(t => t.ValueKind == JsonValueKind.Array ? new string(t.EnumerateArray().Select(c => (char)c.GetInt32()).ToArray()) : t.GetString()!)
            .ToArray();
    }
}
