using System.Text;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>
/// tokenizer.json's <c>WordPiece</c> model: the longest vocabulary entry at the start of the word, then the longest
/// continuing entry (<c>##…</c>) after it, and so on; a word with a part no entry covers, or longer than
/// <c>max_input_chars_per_word</c> characters, is the unknown token.
/// </summary>
internal sealed class WordPieceModel(Dictionary<string, int> vocabulary, string unknownToken, string prefix, int maxCharacters) : TokenModel(vocabulary)
{
    private readonly int _unknown = vocabulary[unknownToken];

    protected override (int Id, int Start, int End)[] TokenizeUncached(string word)
    {
        // Boundaries between characters (code points, as Rust counts them).
        var bounds = new List<int> { 0 };
        for (int i = 0; i < word.Length;)
        {
            i += char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            bounds.Add(i);
        }
        if (bounds.Count - 1 > maxCharacters) return [(_unknown, 0, word.Length)];
        var tokens = new List<(int, int, int)>();
        var candidate = new StringBuilder(word.Length + prefix.Length);
        int from = 0;
        while (from < bounds.Count - 1)
        {
            int found = -1, id = 0;
            for (int to = bounds.Count - 1; to > from; to--)
            {
                candidate.Clear();
                if (from > 0) candidate.Append(prefix);
                candidate.Append(word, bounds[from], bounds[to] - bounds[from]);
                if (Vocabulary.TryGetValue(candidate.ToString(), out id))
                {
                    found = to;
                    break;
                }
            }
            if (found < 0) return [(_unknown, 0, word.Length)];
            tokens.Add((id, bounds[from], bounds[found]));
            from = found;
        }
        return [.. tokens];
    }
}
