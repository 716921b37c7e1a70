using System.Collections.Concurrent;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>A tokenizer.json model: turns one pre-tokenized word into ids.</summary>
internal abstract class TokenModel
{
    private const int CacheCapacity = 10_000;
    private readonly ConcurrentDictionary<string, (int Id, int Start, int End)[]> _cache = new(StringComparer.Ordinal);
    private int _cached;

    protected TokenModel(Dictionary<string, int> vocabulary)
    {
        Vocabulary = vocabulary;
        TokenOfId = new Dictionary<int, string>(vocabulary.Count);
        foreach ((string token, int id) in vocabulary) TokenOfId[id] = token;
    }

    public Dictionary<string, int> Vocabulary { get; }

    public Dictionary<int, string> TokenOfId { get; }

    /// <summary>The word's tokens, each with its range of the word's characters.</summary>
    public (int Id, int Start, int End)[] Tokenize(string word)
    {
        if (word.Length == 0) return [];
        if (_cache.TryGetValue(word, out var cached)) return cached;
        var tokens = TokenizeUncached(word);
        // Words repeat (most text is common words); a bounded cache, as the Rust library keeps, skips their merges.
        // (ConcurrentDictionary.Count takes every lock; a counter of its own is cheap to read.)
        if (word.Length < 256 && Volatile.Read(ref _cached) < CacheCapacity && _cache.TryAdd(word, tokens)) Interlocked.Increment(ref _cached);
        return tokens;
    }

    protected abstract (int Id, int Start, int End)[] TokenizeUncached(string word);
}
