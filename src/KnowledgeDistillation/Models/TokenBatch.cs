using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>Token inputs for the reference transformers.</summary>
/// <param name="InputIds">Token ids, <c>[B, S]</c>, int64.</param>
/// <param name="AttentionMask">Optional <c>[B, S]</c> padding mask, bool or 0/1: true/1 marks a real token.</param>
/// <param name="TokenTypeIds">Optional <c>[B, S]</c> segment ids (BERT-style models only).</param>
/// <param name="ExampleIndices">Optional <c>[B]</c> int64 positions of the sequences in a fixed training set, which a
/// cached teacher reads its targets by (<c>batch =&gt; batch.ExampleIndices!</c>).</param>
public sealed record TokenBatch(Tensor InputIds, Tensor? AttentionMask = null, Tensor? TokenTypeIds = null, Tensor? ExampleIndices = null)
{
    /// <summary>
    /// Optional <c>[B, S]</c> int64 positions of the tokens (decoders only). Null means 0 … S − 1 in every row, or
    /// continuing after a key/value cache; left-padded rows need their own (<c>cumsum(mask) − 1</c>), as generation
    /// computes them. With a cache, <see cref="AttentionMask"/> covers the cached and the new tokens, <c>[B, past + S]</c>.
    /// </summary>
    public Tensor? PositionIds { get; init; }
}
