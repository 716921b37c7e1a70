using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Models;

namespace CrossTokenizerSample;

/// <summary>
/// Windows of the corpus's text (64 bytes: the byte-level teacher's context) tokenized twice — GPT-2's BPE for the
/// student, one token per byte for the teacher — as cross-tokenized batches.
/// </summary>
internal sealed class ChunkBatches(Gpt2Vocabulary gpt2, int windowBytes, int batchSize)
{
    /// <summary>A window of the text, both tokenizations.</summary>
    public CrossTokenizedText Tokenize(byte[] split, int offset)
    {
        string text = System.Text.Encoding.ASCII.GetString(split, offset, windowBytes);
        (int[] ids, int[] lengths) = gpt2.Encode(text);
        int[] bytes = split.AsSpan(offset, windowBytes).ToArray().Select(b => (int)b).ToArray();
        return new CrossTokenizedText(ids, lengths, bytes, Enumerable.Repeat(1, windowBytes).ToArray());
    }

    /// <summary>Endless random training windows, drawn with a generator of <paramref name="seed"/> (so each method of a seed sees the same windows).</summary>
    public IEnumerable<DistillationBatch<CrossTokenizerBatch>> Training(byte[] train, int seed)
    {
        var random = new Random(seed);
        while (true)
        {
            var texts = new List<CrossTokenizedText>(batchSize);
            while (texts.Count < batchSize)
            {
                CrossTokenizedText text = Tokenize(train, random.Next(train.Length - windowBytes));
                if (text.StudentIds.Length >= 2) texts.Add(text);
            }
            yield return CrossTokenizerBatch.Create(texts, Gpt2Vocabulary.EndOfText, ' ') with { DisposeAfterUse = true };
        }
    }

    /// <summary>The first <paramref name="count"/> consecutive windows of a split, fixed, for scoring.</summary>
    public List<CrossTokenizedText> Fixed(byte[] split, int count) =>
        Enumerable.Range(0, Math.Min(count, split.Length / windowBytes)).Select(i => Tokenize(split, i * windowBytes)).Where(t => t.StudentIds.Length >= 2).ToList();
}
