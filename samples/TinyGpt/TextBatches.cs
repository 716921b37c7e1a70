using KnowledgeDistillation.Generation;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace TinyGpt;

/// <summary>Windows of <c>context</c> tokens and the next token at every position, as token batches.</summary>
internal sealed class TextBatches
{
    private readonly Tensor _train, _validation, _test;
    private readonly int _context, _batch;

    /// <summary>Batches of the corpus's bytes, each byte a token.</summary>
    public TextBatches(Corpus corpus, int context, int batch)
        : this(Bytes(corpus.Train), Bytes(corpus.Validation), Bytes(corpus.Test), context, batch)
    {
    }

    /// <summary>Batches of token ids (the three splits already tokenized).</summary>
    public TextBatches(long[] train, long[] validation, long[] test, int context, int batch)
    {
        foreach ((long[] split, string name) in new[] { (train, "training"), (validation, "validation"), (test, "test") })
        {
            if (split.Length <= context * 2) throw new InvalidOperationException($"The {name} split has {split.Length} tokens; at least {context * 2 + 1} are needed for windows of {context}.");
        }
        _train = tensor(train).DetachFromDisposeScope();
        _validation = tensor(validation).DetachFromDisposeScope();
        _test = tensor(test).DetachFromDisposeScope();
        _context = context;
        _batch = batch;
    }

    private static long[] Bytes(byte[] text) => text.Select(b => (long)b).ToArray();

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

    /// <summary>
    /// An endless stream of random training windows split into a prompt (the first <paramref name="promptLength"/> tokens)
    /// and the data's completion (the rest of the window), for on-policy distillation, drawn with torch's RNG.
    /// </summary>
    public IEnumerable<PromptBatch> PromptWindows(int promptLength)
    {
        while (true)
        {
            PromptBatch batch;
            using (NewDisposeScope()) // closed before the yield: a scope must not stay open while the consumer runs
            {
                Tensor offsets = randint(0, _train.shape[0] - _context - 1, [_batch]);
                Tensor windows = _train[offsets.unsqueeze(1) + arange(_context, dtype: ScalarType.Int64)];
                batch = new PromptBatch(windows.narrow(1, 0, promptLength).contiguous().DetachFromDisposeScope(), null,
                    windows.narrow(1, promptLength, _context - promptLength).contiguous().DetachFromDisposeScope());
            }
            yield return batch;
            batch.PromptIds.Dispose();
            batch.Completions!.Dispose();
        }
    }

    /// <summary><paramref name="count"/> fixed prompts of <paramref name="promptLength"/> tokens from the held-out test text, for judging generations.</summary>
    public Tensor TestPrompts(int count, int promptLength)
    {
        long span = _test.shape[0] - promptLength - 1;
        Tensor offsets = arange(count, dtype: ScalarType.Int64) * (span / count);
        return _test[offsets.unsqueeze(1) + arange(promptLength, dtype: ScalarType.Int64)].DetachFromDisposeScope();
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
