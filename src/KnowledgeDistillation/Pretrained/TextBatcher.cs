using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Turns text into trainer batches for the three usual objectives: causal language modelling, masked language
/// modelling (BERT / DistilBERT masking) and classification. Rows are padded on the right to the longest row, with an
/// attention mask, and every label the loss must skip is <see cref="Labels.IgnoreIndex"/> (−100).
/// </summary>
public sealed class TextBatcher
{
    private readonly PretrainedTokenizer _tokenizer;
    private readonly int _maxLength;

    /// <summary>Creates a batcher that truncates every text to <paramref name="maxLength"/> tokens, special tokens included.</summary>
    public TextBatcher(PretrainedTokenizer tokenizer, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        int specials = tokenizer.Prefix.Count + tokenizer.Suffix.Count;
        if (maxLength <= specials + 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"maxLength must leave room for at least two tokens beside the {specials} special tokens; got {maxLength}.");
        }
        _tokenizer = tokenizer;
        _maxLength = maxLength;
    }

    /// <summary>
    /// Next-token prediction: <c>Labels[b, s]</c> is the token at <c>s + 1</c> (the shift is done here, so logits and
    /// labels line up position by position as the library's losses expect); the last real position and padding are −100.
    /// </summary>
    public DistillationBatch<TokenBatch> CausalLanguageModeling(IReadOnlyList<string> texts)
    {
        List<IReadOnlyList<int>> rows = Encode(texts);
        int length = rows.Max(r => r.Count);
        long[] ids = Padded(rows, length), labels = Filled(rows.Count, length);
        for (int b = 0; b < rows.Count; b++)
        {
            for (int s = 0; s + 1 < rows[b].Count; s++) labels[b * length + s] = rows[b][s + 1];
        }
        return Batch(ids, labels, rows, length, [rows.Count, length]);
    }

    /// <summary>
    /// BERT's masked-LM corruption, as DistilBERT trains it: each real, non-special token is chosen with probability
    /// <paramref name="maskProbability"/>; a chosen token becomes <c>[MASK]</c> 80% of the time, a random token 10%, and
    /// stays 10%. Labels hold the original token at chosen positions and −100 elsewhere. <paramref name="random"/> makes it reproducible.
    /// </summary>
    /// <exception cref="InvalidOperationException">The tokenizer has no mask token.</exception>
    public DistillationBatch<TokenBatch> MaskedLanguageModeling(IReadOnlyList<string> texts, Random random, double maskProbability = 0.15)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (!(maskProbability > 0 && maskProbability <= 1)) throw new ArgumentOutOfRangeException(nameof(maskProbability), maskProbability, "maskProbability must lie in (0, 1].");
        int mask = _tokenizer.Special.Mask ?? throw new InvalidOperationException($"The {_tokenizer.Format} tokenizer has no mask token; masked language modelling needs one.");
        IReadOnlySet<int> special = _tokenizer.Special.All;
        List<IReadOnlyList<int>> rows = Encode(texts);
        int length = rows.Max(r => r.Count);
        long[] ids = Padded(rows, length), labels = Filled(rows.Count, length);
        for (int b = 0; b < rows.Count; b++)
        {
            for (int s = 0; s < rows[b].Count; s++)
            {
                int token = rows[b][s];
                if (special.Contains(token) || random.NextDouble() >= maskProbability) continue;
                labels[b * length + s] = token;
                double r = random.NextDouble();
                ids[b * length + s] = r < 0.8 ? mask : r < 0.9 ? random.Next(_tokenizer.VocabularySize) : token;
            }
        }
        return Batch(ids, labels, rows, length, [rows.Count, length]);
    }

    /// <summary>Sequence classification: one class id per text.</summary>
    public DistillationBatch<TokenBatch> Classification(IReadOnlyList<string> texts, IReadOnlyList<int> classes)
    {
        ArgumentNullException.ThrowIfNull(classes);
        if (classes.Count != texts?.Count)
        {
            throw new ArgumentException($"classes has {classes.Count} entries but texts has {texts?.Count}; give one class per text.", nameof(classes));
        }
        List<IReadOnlyList<int>> rows = Encode(texts);
        int length = rows.Max(r => r.Count);
        return Batch(Padded(rows, length), classes.Select(c => (long)c).ToArray(), rows, length, [rows.Count]);
    }

    private List<IReadOnlyList<int>> Encode(IReadOnlyList<string>? texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ArgumentException("texts is empty; a batch needs at least one text.", nameof(texts));
        int bad = texts.ToList().FindIndex(t => t is null);
        if (bad >= 0) throw new ArgumentException($"texts[{bad}] is null.", nameof(texts));
        return texts.Select(t => _tokenizer.Encode(t, _maxLength)).ToList();
    }

    private long[] Padded(List<IReadOnlyList<int>> rows, int length)
    {
        long[] ids = Enumerable.Repeat((long)_tokenizer.PaddingId, rows.Count * length).ToArray();
        for (int b = 0; b < rows.Count; b++)
        {
            for (int s = 0; s < rows[b].Count; s++) ids[b * length + s] = rows[b][s];
        }
        return ids;
    }

    private static long[] Filled(int rows, int length) => Enumerable.Repeat((long)Labels.IgnoreIndex, rows * length).ToArray();

    private static DistillationBatch<TokenBatch> Batch(long[] ids, long[] labels, List<IReadOnlyList<int>> rows, int length, long[] labelShape)
    {
        bool[] attention = new bool[rows.Count * length];
        for (int b = 0; b < rows.Count; b++)
        {
            for (int s = 0; s < rows[b].Count; s++) attention[b * length + s] = true;
        }
        // The attention mask travels in the token batch only: the trainer and the objective fall back to it for every term.
        return new DistillationBatch<TokenBatch>(new TokenBatch(tensor(ids, [rows.Count, length]), tensor(attention, [rows.Count, length])), tensor(labels, labelShape));
    }
}
