using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace TinyGpt;

/// <summary>Windows of <c>context</c> bytes and the next byte at every position, as token batches.</summary>
internal sealed class TextBatches
{
    private readonly Tensor _train, _validation, _test;
    private readonly int _context, _batch;

    public TextBatches(Corpus corpus, int context, int batch)
    {
        _train = tensor(corpus.Train.Select(b => (long)b).ToArray()).DetachFromDisposeScope();
        _validation = tensor(corpus.Validation.Select(b => (long)b).ToArray()).DetachFromDisposeScope();
        _test = tensor(corpus.Test.Select(b => (long)b).ToArray()).DetachFromDisposeScope();
        _context = context;
        _batch = batch;
    }

    /// <summary>An endless stream of random training windows, drawn with torch's RNG (so a seed fixes it).</summary>
    public IEnumerable<DistillationBatch<TokenBatch>> Training()
    {
        while (true)
        {
            Tensor offsets = randint(0, _train.shape[0] - _context - 1, [_batch]);
            yield return Window(_train, offsets) with { DisposeAfterUse = true };
            offsets.Dispose();
        }
    }

    /// <summary><paramref name="count"/> fixed validation batches, evenly spaced through the validation text: every choice is made on these.</summary>
    public List<DistillationBatch<TokenBatch>> Validation(int count) => Fixed(_validation, count);

    /// <summary><paramref name="count"/> fixed batches of the held-out test text: only the final table reads them.</summary>
    public List<DistillationBatch<TokenBatch>> Test(int count) => Fixed(_test, count);

    private List<DistillationBatch<TokenBatch>> Fixed(Tensor text, int count)
    {
        long span = text.shape[0] - _context - 1;
        return Enumerable.Range(0, count)
            .Select(i => Window(text, (arange(_batch, dtype: ScalarType.Int64) + i * _batch) * (span / (count * _batch))))
            .ToList();
    }

    private DistillationBatch<TokenBatch> Window(Tensor text, Tensor offsets)
    {
        using var scope = NewDisposeScope();
        Tensor windows = text[offsets.unsqueeze(1) + arange(_context + 1, dtype: ScalarType.Int64)];
        Tensor inputs = windows[TensorIndex.Colon, TensorIndex.Slice(0, _context)].contiguous().MoveToOuterDisposeScope();
        Tensor labels = windows[TensorIndex.Colon, TensorIndex.Slice(1, _context + 1)].contiguous().MoveToOuterDisposeScope();
        return new DistillationBatch<TokenBatch>(new TokenBatch(inputs), labels);
    }
}
