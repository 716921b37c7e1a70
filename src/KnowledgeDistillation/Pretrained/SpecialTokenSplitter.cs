namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Special tokens written in the text ("[SEP]", "[MASK]") are matched in the raw text before any normalisation and
/// become their own ids, as Hugging Face's tokenizers treat added special tokens; the text between them is tokenized
/// as usual.
/// </summary>
internal static class SpecialTokenSplitter
{
    public static IReadOnlyList<int> Encode(string text, IReadOnlyDictionary<string, int> specials, Func<string, IReadOnlyList<int>> encode)
    {
        var ids = new List<int>();
        int from = 0;
        while (from < text.Length)
        {
            (int at, string? token) = Next(text, from, specials);
            if (token is null)
            {
                ids.AddRange(encode(text[from..]));
                break;
            }
            if (at > from) ids.AddRange(encode(text[from..at]));
            ids.Add(specials[token]);
            from = at + token.Length;
        }
        return ids;
    }

    /// <summary>The leftmost special token at or after <paramref name="from"/>, the longest where two start together.</summary>
    private static (int At, string? Token) Next(string text, int from, IReadOnlyDictionary<string, int> specials)
    {
        int best = int.MaxValue;
        string? found = null;
        foreach (string s in specials.Keys)
        {
            int at = text.IndexOf(s, from, StringComparison.Ordinal);
            if (at >= 0 && (at < best || (at == best && s.Length > found!.Length))) (best, found) = (at, s);
        }
        return (best, found);
    }
}
