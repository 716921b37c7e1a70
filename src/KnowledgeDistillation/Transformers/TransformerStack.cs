using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>Runs a stack of blocks, keeping per-layer outputs only when they are requested.</summary>
internal static class TransformerStack
{
    /// <summary>What every reference model's output can hold.</summary>
    public const ModelOutputKinds Outputs = ModelOutputKinds.Logits | ModelOutputKinds.HiddenStates | ModelOutputKinds.Attention | ModelOutputKinds.QueryKeyValues;

    public sealed record Result(Tensor Last, List<Tensor>? HiddenStates, List<Tensor>? Scores, List<Tensor>? Probabilities, List<SelfAttentionStates>? States = null)
    {
        /// <summary>Applies the final norm to the last state and, under the Hugging Face convention, makes it the last hidden state.</summary>
        public Tensor Finish(Func<Tensor, Tensor> finalNorm, HiddenStateConvention convention)
        {
            Tensor normed = finalNorm(Last);
            if (convention == HiddenStateConvention.HuggingFace && HiddenStates is { Count: > 1 }) HiddenStates[^1] = normed;
            return normed;
        }

        /// <summary>The model's output: <paramref name="logits"/> with the per-layer states that were requested.</summary>
        public ModelOutput ToOutput(Tensor logits, Tensor? attentionMask) =>
            new ModelOutput(logits, HiddenStates, Scores, Probabilities, attentionMask) { QueryKeyValues = States }.MoveToOuterDisposeScope();
    }

    /// <summary>A decoder's token positions: the batch's own, or those after the <paramref name="past"/> cached tokens.</summary>
    public static Tensor DecoderPositions(TokenBatch batch, long past, long length, Device device) =>
        batch.PositionIds?.to(ScalarType.Int64) ?? arange(past, past + length, dtype: ScalarType.Int64, device: device);

    /// <summary>A language-model head: its own matrix, or the token embedding's when tied (<paramref name="head"/> null).</summary>
    public static Tensor LanguageModelLogits(Tensor hidden, TorchSharp.Modules.Linear? head, TorchSharp.Modules.Embedding embedding) =>
        head is null ? nn.functional.linear(hidden, embedding.weight!) : head.call(hidden);

    /// <summary>
    /// Runs <paramref name="blocks"/> in order; <paramref name="step"/> runs one block (its index, its input, whether to
    /// return maps, whether to return queries, keys and values). With <paramref name="checkpoint"/>, while gradients are
    /// on and no attention maps or queries, keys and values are asked for, each block runs under
    /// <see cref="ActivationCheckpoint"/>.
    /// </summary>
    /// <remarks>captured: tensors the step reads besides its input (masks, rotary tables), which a checkpointed block reads again in the backward pass.</remarks>
    public static Result Run<TBlock>(IEnumerable<TBlock> blocks, Tensor embeddings, OutputRequest request, Func<TBlock, int, Tensor, bool, bool, AttentionResult> step,
        bool checkpoint = false, params Tensor?[] captured)
    {
        bool recompute = checkpoint && is_grad_enabled() && !request.AnyAttention && !request.QueryKeyValues;
        if (recompute) ActivationCheckpoint.Keep(captured);
        List<SelfAttentionStates>? states = request.QueryKeyValues ? [] : null;
        List<Tensor>? hidden = request.HiddenStates ? [embeddings] : null;
        List<Tensor>? scores = request.AttentionScores ? [] : null;
        List<Tensor>? probabilities = request.AttentionProbabilities ? [] : null;
        Tensor x = embeddings;
        int index = 0;
        foreach (TBlock block in blocks)
        {
            int layer = index++;
            // A block's own scope: what it makes and does not return (or autograd does not keep) is freed when the block
            // ends, not when the model's forward pass does. Without it a forward pass holds every block's temporaries at
            // once: a no-gradient teacher's whole working set, not one block's.
            using var blockScope = NewDisposeScope();
            Tensor blockInput = x;
            if (recompute)
            {
                x = ActivationCheckpoint.Run(x, input => step(block, layer, input, false, false).Output).MoveToOuterDisposeScope();
                hidden?.Add(x);
                Release(blockInput, embeddings, hidden);
                continue;
            }
            AttentionResult r = step(block, layer, x, request.AnyAttention, request.QueryKeyValues);
            r.Output.MoveToOuterDisposeScope();
            r.Scores?.MoveToOuterDisposeScope();
            r.Probabilities?.MoveToOuterDisposeScope();
            if (r.States is { } kept)
            {
                kept.Queries.MoveToOuterDisposeScope();
                kept.Keys.MoveToOuterDisposeScope();
                kept.Values.MoveToOuterDisposeScope();
            }
            if (states is not null) states.Add(r.States!);
            x = r.Output;
            hidden?.Add(x);
            Release(blockInput, embeddings, hidden);
            scores?.Add(r.Scores!);
            probabilities?.Add(r.Probabilities!);
        }
        return new Result(x, hidden, scores, probabilities, states);
    }

    /// <summary>
    /// Drops our handle on a block's input once the next block has read it, unless it is the caller's embeddings or a
    /// requested hidden state: under no_grad (a teacher) its memory is freed now instead of when the forward pass ends;
    /// with gradients autograd keeps what it saved of it.
    /// </summary>
    private static void Release(Tensor input, Tensor embeddings, List<Tensor>? hidden)
    {
        if (hidden is null && !ReferenceEquals(input, embeddings)) input.Dispose();
    }

    /// <summary>Runs standard <see cref="TransformerBlock"/>s, appending to <paramref name="cache"/> when given.</summary>
    public static Result Run(IEnumerable<TransformerBlock> blocks, Tensor embeddings, Tensor? additiveMask, bool causal, OutputRequest request, KeyValueCache? cache = null,
        bool checkpoint = false) =>
        Run(blocks, embeddings, request, (block, layer, x, maps, qkv) => block.Apply(x, additiveMask, causal, maps, cache, layer, qkv), checkpoint && cache is null, additiveMask);
}
