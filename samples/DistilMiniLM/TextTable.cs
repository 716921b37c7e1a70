using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using static TorchSharp.torch;

namespace DistilMiniLM;

/// <summary>
/// Every text of the run, tokenized once with the teacher's own WordPiece vocabulary and cut to the run's token limit;
/// a text's index here is its row in the teacher cache. Batches are padded on the right with [PAD] under a zero mask.
/// </summary>
internal sealed class TextTable
{
    private readonly int[][] _ids;
    private readonly int _padding;

    public TextTable(IReadOnlyList<string> texts, PretrainedTokenizer tokenizer, int maxTokens)
    {
        Texts = texts;
        _padding = tokenizer.PaddingId;
        _ids = new int[texts.Count][];
        int truncated = 0;
        Parallel.For(0, texts.Count, i =>
        {
            IReadOnlyList<int> full = tokenizer.Encode(texts[i]);
            if (full.Count > maxTokens)
            {
                // As Hugging Face truncates: keep [CLS], cut the text's tokens, end with [SEP].
                Interlocked.Increment(ref truncated);
                _ids[i] = [.. full.Take(maxTokens - 1), full[^1]];
            }
            else
            {
                _ids[i] = [.. full];
            }
        });
        Truncated = truncated;
        MaxTokens = maxTokens;
    }

    public IReadOnlyList<string> Texts { get; }

    public int Count => _ids.Length;

    public int MaxTokens { get; }

    /// <summary>Texts longer than <see cref="MaxTokens"/> tokens, cut to it.</summary>
    public int Truncated { get; }

    public int Length(int index) => _ids[index].Length;

    /// <summary>The first 12 hex digits of a SHA-256 of every text's ids: equal tables, equal fingerprints.</summary>
    public string Fingerprint()
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (int[] row in _ids)
        {
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.AsSpan()));
            hash.AppendData([0xFF, 0xFF, 0xFF, 0xFF]);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset())[..12];
    }

    /// <summary>The texts <paramref name="indices"/> as one padded batch whose example indices are their rows here.</summary>
    public TokenBatch Batch(IReadOnlyList<int> indices)
    {
        int length = indices.Max(i => _ids[i].Length);
        var ids = new long[indices.Count * length];
        var mask = new long[indices.Count * length];
        for (int r = 0; r < indices.Count; r++)
        {
            int[] row = _ids[indices[r]];
            for (int j = 0; j < length; j++)
            {
                ids[r * length + j] = j < row.Length ? row[j] : _padding;
                mask[r * length + j] = j < row.Length ? 1 : 0;
            }
        }
        return new TokenBatch(tensor(ids, [indices.Count, length]), tensor(mask, [indices.Count, length]), ExampleIndices: tensor(indices.Select(i => (long)i).ToArray()));
    }

    /// <summary><paramref name="indices"/> in chunks of <paramref name="size"/> texts of similar length (less padding), in length order.</summary>
    public IEnumerable<int[]> ByLength(IEnumerable<int> indices, int size) => indices.OrderBy(i => _ids[i].Length).ThenBy(i => i).Chunk(size);
}
