using System.Text;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>
/// tokenizer.json's <c>BPE</c> model: a word starts as one symbol per character (with the continuing-subword prefix
/// and end-of-word suffix where given; with <c>byte_fallback</c>, a character outside the vocabulary becomes its UTF-8
/// bytes' <c>&lt;0xNN&gt;</c> tokens, else the unknown token, runs of them fused when <c>fuse_unk</c>), then the pair
/// of adjacent symbols with the lowest merge rank (the leftmost among equals) is merged until no pair has a rank.
/// With <c>ignore_merges</c>, a word that is itself in the vocabulary is one token.
/// </summary>
internal sealed class BpeModel : TokenModel
{
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly string? _prefix;
    private readonly string? _suffix;
    private readonly int? _unknown;
    private readonly bool _fuseUnknown;
    private readonly bool _byteFallback;
    private readonly bool _ignoreMerges;
    private readonly int[]? _byteIds;
#if NET9_0_OR_GREATER
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _spanLookup;
#endif

    public BpeModel(Dictionary<string, int> vocabulary, Dictionary<long, (int Rank, int NewId)> merges, string? unknownToken, string? prefix, string? suffix,
        bool fuseUnknown, bool byteFallback, bool ignoreMerges) : base(vocabulary)
    {
        _merges = merges;
        _prefix = string.IsNullOrEmpty(prefix) ? null : prefix;
        _suffix = string.IsNullOrEmpty(suffix) ? null : suffix;
        _unknown = unknownToken is null ? null : vocabulary[unknownToken];
        _fuseUnknown = fuseUnknown;
        _byteFallback = byteFallback;
        _ignoreMerges = ignoreMerges;
#if NET9_0_OR_GREATER
        _spanLookup = vocabulary.GetAlternateLookup<ReadOnlySpan<char>>();
#endif
        if (byteFallback)
        {
            _byteIds = new int[256];
            for (int b = 0; b < 256; b++) _byteIds[b] = vocabulary.TryGetValue(ByteFallbackToken.Name((byte)b), out int id) ? id : -1;
        }
    }

    public static long Pair(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>A hash for pair keys: long's own hash is left XOR right, under which hundreds of thousands of merges collide.</summary>
    internal sealed class PairComparer : IEqualityComparer<long>
    {
        public static readonly PairComparer Instance = new();

        public bool Equals(long x, long y) => x == y;

        public int GetHashCode(long pair) => (int)(((ulong)pair * 0x9E3779B97F4A7C15UL) >> 32);
    }

    protected override (int Id, int Start, int End)[] TokenizeUncached(string word)
    {
        if (_ignoreMerges && Vocabulary.TryGetValue(word, out int whole)) return [(whole, 0, word.Length)];
        var symbols = new List<Symbol>(word.Length);
        (int Id, int Start, int End)? unknown = null;
        Span<byte> bytes = stackalloc byte[4];
        for (int i = 0; i < word.Length;)
        {
            int length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            int end = i + length;
            bool decorated = (i > 0 && _prefix is not null) || (end == word.Length && _suffix is not null);
            // Most characters need no prefix or suffix: look them up as a span of the word, without a string each.
            string? piece = decorated ? (i > 0 ? _prefix : "") + word.Substring(i, length) + (end == word.Length ? _suffix : "") : null;
#if NET9_0_OR_GREATER
            bool known = piece is null ? _spanLookup.TryGetValue(word.AsSpan(i, length), out int id) : Vocabulary.TryGetValue(piece, out id);
#else
            bool known = Vocabulary.TryGetValue(piece ?? word.Substring(i, length), out int id);
#endif
            if (known)
            {
                if (unknown is { } u) symbols.Add(new Symbol(u.Id, u.Start, u.End));
                unknown = null;
                symbols.Add(new Symbol(id, i, end));
            }
            else if (_byteIds is not null && ByteIds(piece ?? word.Substring(i, length), bytes) is { } byteIds)
            {
                // As in the Rust library, a pending unknown token is not written before the bytes (it follows them).
                foreach (int b in byteIds) symbols.Add(new Symbol(b, i, end));
            }
            else if (_unknown is int unk)
            {
                if (unknown is { } u)
                {
                    if (_fuseUnknown) unknown = (u.Id, u.Start, end);
                    else
                    {
                        symbols.Add(new Symbol(u.Id, u.Start, u.End));
                        unknown = (unk, i, end);
                    }
                }
                else
                {
                    unknown = (unk, i, end);
                }
            }
            i = end;
        }
        if (unknown is { } last) symbols.Add(new Symbol(last.Id, last.Start, last.End));
        MergeAll(symbols);
        var tokens = new List<(int, int, int)>(symbols.Count);
        foreach (Symbol s in symbols)
        {
            if (!s.Removed) tokens.Add((s.Id, s.Start, s.End));
        }
        return [.. tokens];
    }

    /// <summary>The ids of the piece's UTF-8 bytes, or null when the vocabulary lacks one of them.</summary>
    private int[]? ByteIds(string piece, Span<byte> buffer)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(piece);
        var ids = new int[utf8.Length];
        for (int k = 0; k < utf8.Length; k++)
        {
            ids[k] = _byteIds![utf8[k]];
            if (ids[k] < 0) return null;
        }
        return ids;
    }

    /// <summary>Merges by rank: short words by scanning for the lowest-ranked pair (no allocation), long ones (a line of CJK
    /// text in a model whose pre-tokenizer splits only at spaces) with a priority queue over a linked list, near n log n.
    /// Both take the lowest rank, the leftmost among equals.</summary>
    private void MergeAll(List<Symbol> symbols)
    {
        int n = symbols.Count;
        if (n < 2) return;
        if (n <= 12)
        {
            MergeByScanning(symbols);
            return;
        }
        var previous = new int[n];
        var next = new int[n];
        for (int i = 0; i < n; i++)
        {
            previous[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        // Priority rank, then position, packed in one long: compared as a primitive, much faster than a tuple.
        var queue = new PriorityQueue<(int Position, int NewId), long>(n);
        void Consider(int at)
        {
            int right = next[at];
            if (right < 0) return;
            if (_merges.TryGetValue(Pair(symbols[at].Id, symbols[right].Id), out var merge)) queue.Enqueue((at, merge.NewId), ((long)merge.Rank << 32) | (uint)at);
        }
        for (int i = 0; i + 1 < n; i++) Consider(i);
        while (queue.TryDequeue(out var top, out _))
        {
            Symbol left = symbols[top.Position];
            if (left.Removed || next[top.Position] < 0) continue;
            int rightAt = next[top.Position];
            Symbol right = symbols[rightAt];
            // A queued pair is stale when either side has merged since: its symbols no longer make this merge.
            if (!_merges.TryGetValue(Pair(left.Id, right.Id), out var merge) || merge.NewId != top.NewId) continue;
            symbols[top.Position] = new Symbol(merge.NewId, left.Start, right.End);
            symbols[rightAt] = right with { Removed = true };
            next[top.Position] = next[rightAt];
            if (next[rightAt] >= 0) previous[next[rightAt]] = top.Position;
            if (previous[top.Position] >= 0) Consider(previous[top.Position]);
            Consider(top.Position);
        }
    }

    private void MergeByScanning(List<Symbol> symbols)
    {
        while (symbols.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue, bestId = 0;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (_merges.TryGetValue(Pair(symbols[i].Id, symbols[i + 1].Id), out var merge) && merge.Rank < bestRank)
                {
                    (best, bestRank, bestId) = (i, merge.Rank, merge.NewId);
                }
            }
            if (best < 0) return;
            symbols[best] = new Symbol(bestId, symbols[best].Start, symbols[best + 1].End);
            symbols.RemoveAt(best + 1);
        }
    }

    private readonly record struct Symbol(int Id, int Start, int End, bool Removed = false);
}
