namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>
/// tokenizer.json's <c>Unigram</c> model (SentencePiece's unigram language model: T5, ALBERT, XLNet): the split of the
/// word whose pieces' scores (log-probabilities) sum highest, found left to right (Viterbi). A character no piece
/// covers is the unknown token at the lowest score minus 10, and runs of unknown characters are one token; with
/// <c>byte_fallback</c> such a run becomes its UTF-8 bytes' <c>&lt;0xNN&gt;</c> pieces when the vocabulary has them all.
/// </summary>
internal sealed class UnigramModel : TokenModel
{
    private const double UnknownPenalty = 10.0;
    private readonly double[] _scores;
    private readonly int? _unknown;
    private readonly bool _byteFallback;
    private readonly double _unknownScore;
    private readonly Node _root = new();

    public UnigramModel(IReadOnlyList<(string Piece, double Score)> pieces, int? unknownId, bool byteFallback) : base(PieceIds(pieces))
    {
        _scores = pieces.Select(p => p.Score).ToArray();
        _unknown = unknownId;
        _byteFallback = byteFallback;
        _unknownScore = _scores.Min() - UnknownPenalty;
        for (int id = 0; id < pieces.Count; id++)
        {
            Node node = _root;
            foreach (char c in pieces[id].Piece)
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(c, out Node? child)) node.Children[c] = child = new Node();
                node = child;
            }
            // As in the Rust library, a piece written twice resolves to its last id.
            node.Id = id;
        }
        // The reverse table keeps each id's own piece.
        for (int id = 0; id < pieces.Count; id++) TokenOfId[id] = pieces[id].Piece;
    }

    private static Dictionary<string, int> PieceIds(IReadOnlyList<(string Piece, double Score)> pieces)
    {
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < pieces.Count; id++) vocabulary[pieces[id].Piece] = id;
        return vocabulary;
    }

    protected override (int Id, int Start, int End)[] TokenizeUncached(string word)
    {
        int n = word.Length;
        var bestScore = new double[n + 1];
        var startOf = new int[n + 1];
        var idOf = new int[n + 1];
        Array.Fill(startOf, -1);
        for (int start = 0; start < n;)
        {
            int charLength = char.IsHighSurrogate(word[start]) && start + 1 < n && char.IsLowSurrogate(word[start + 1]) ? 2 : 1;
            double before = bestScore[start];
            bool single = false;
            Node node = _root;
            for (int i = start; i < n; i++)
            {
                if (node.Children is null || !node.Children.TryGetValue(word[i], out Node? child)) break;
                node = child;
                if (node.Id is not int id) continue;
                int end = i + 1;
                double candidate = _scores[id] + before;
                if (startOf[end] < 0 || candidate > bestScore[end]) (bestScore[end], startOf[end], idOf[end]) = (candidate, start, id);
                if (end - start == charLength) single = true;
            }
            if (!single)
            {
                int end = start + charLength;
                int unknown = _unknown ?? throw new InvalidOperationException($"The Unigram model has no unk_id, and \"{word.Substring(start, charLength)}\" is in none of its pieces.");
                double candidate = _unknownScore + before;
                if (startOf[end] < 0 || candidate > bestScore[end]) (bestScore[end], startOf[end], idOf[end]) = (candidate, start, unknown);
            }
            start += charLength;
        }
        // Back from the end; runs of unknown pieces become one piece of text.
        var pieces = new List<(int Start, int End, bool Unknown)>();
        for (int end = n; end > 0; end = startOf[end])
        {
            bool unknown = _unknown is int u && idOf[end] == u;
            if (unknown && pieces.Count > 0 && pieces[^1].Unknown) pieces[^1] = (startOf[end], pieces[^1].End, true);
            else pieces.Add((startOf[end], end, unknown));
        }
        pieces.Reverse();
        var tokens = new List<(int, int, int)>(pieces.Count);
        foreach ((int start, int end, bool unknown) in pieces)
        {
            string text = word[start..end];
            if (!unknown && Vocabulary.TryGetValue(text, out int id))
            {
                tokens.Add((id, start, end));
            }
            else if (_byteFallback && ByteIds(text) is { } bytes)
            {
                foreach (int b in bytes) tokens.Add((b, start, end));
            }
            else
            {
                tokens.Add((Vocabulary.TryGetValue(text, out int known) ? known : _unknown!.Value, start, end));
            }
        }
        return [.. tokens];
    }

    private int[]? ByteIds(string text)
    {
        byte[] utf8 = System.Text.Encoding.UTF8.GetBytes(text);
        var ids = new int[utf8.Length];
        for (int k = 0; k < utf8.Length; k++)
        {
            if (!Vocabulary.TryGetValue(ByteFallbackToken.Name(utf8[k]), out ids[k])) return null;
        }
        return ids;
    }

    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public int? Id;
    }
}
