using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>
/// What one forward pass of a teacher or student produced: logits and, when requested, per-layer hidden states and
/// per-head attention maps.
/// </summary>
/// <remarks>
/// <para>
/// <b>Ownership.</b> The output owns every tensor it holds except <see cref="AttentionMask"/>, which belongs to the
/// batch it came from. The tensors are created in the dispose scope that is current during the forward pass, so
/// the usual pattern — one <c>torch.NewDisposeScope()</c> per training step — frees them with everything else.
/// Outside a scope, <see cref="Dispose"/> frees them; to keep an output beyond its step's scope call
/// <see cref="MoveToOuterDisposeScope"/> or <see cref="DetachFromDisposeScope"/>. Disposing twice is harmless.
/// </para>
/// <para>
/// <b>Layout.</b> <see cref="HiddenStates"/>[0] is the embedding output and [i] the output of layer i
/// (i = 1 … L), each <c>[B, S, D]</c>. <see cref="AttentionScores"/>[i] and <see cref="AttentionProbabilities"/>[i]
/// are layer i + 1's maps, <c>[B, H, S, S]</c> (batch, heads, queries, keys). The reference transformers put the dtype's
/// lowest finite value (not -inf) in masked scores, so a fully padded row stays finite.
/// </para>
/// </remarks>
public sealed class ModelOutput : IDisposable
{
    /// <summary>Creates an output; it takes ownership of every tensor but <paramref name="attentionMask"/>.</summary>
    /// <param name="logits">The model's logits.</param>
    /// <param name="hiddenStates">Embedding output first, then one per layer; null when not requested.</param>
    /// <param name="attentionScores">Pre-softmax scores per layer; null when not requested.</param>
    /// <param name="attentionProbabilities">Attention probabilities per layer; null when not requested.</param>
    /// <param name="attentionMask">The padding mask the pass used, <c>[B, S]</c> with 1/true for real tokens; not owned.</param>
    public ModelOutput(
        Tensor logits,
        IReadOnlyList<Tensor>? hiddenStates = null,
        IReadOnlyList<Tensor>? attentionScores = null,
        IReadOnlyList<Tensor>? attentionProbabilities = null,
        Tensor? attentionMask = null)
    {
        ArgumentNullException.ThrowIfNull(logits);
        _logits = logits;
        HiddenStates = hiddenStates;
        AttentionScores = attentionScores;
        AttentionProbabilities = attentionProbabilities;
        AttentionMask = attentionMask;
    }

    /// <summary>Creates the output of a cached teacher: sparse top-k targets instead of logits (a teacher cache).</summary>
    /// <param name="topK">The targets; the output takes ownership.</param>
    public ModelOutput(TopKTargets topK)
    {
        TopK = topK ?? throw new ArgumentNullException(nameof(topK));
    }

    private readonly Tensor? _logits;

    /// <summary>The logits: <c>[N, C]</c> for classification, <c>[B, S, V]</c> for language models.</summary>
    /// <exception cref="InvalidOperationException">The output comes from a teacher cache, which holds <see cref="TopK"/> targets, not logits.</exception>
    public Tensor Logits => _logits ?? throw new InvalidOperationException(
        "This output comes from a teacher cache: it holds the top-k probabilities (TopK), not logits. Only soft-target terms can read it.");

    /// <summary>Whether <see cref="Logits"/> is available (false for a cached teacher's output).</summary>
    public bool HasLogits => _logits is not null;

    /// <summary>A cached teacher's sparse targets; null for a model that ran.</summary>
    public TopKTargets? TopK { get; }

    /// <summary>Embedding output, then each layer's output; null when not requested.</summary>
    public IReadOnlyList<Tensor>? HiddenStates { get; }

    /// <summary>Each layer's pre-softmax attention scores; null when not requested.</summary>
    public IReadOnlyList<Tensor>? AttentionScores { get; }

    /// <summary>Each layer's attention probabilities; null when not requested.</summary>
    public IReadOnlyList<Tensor>? AttentionProbabilities { get; }

    /// <summary>Each layer's self-attention queries, keys and values; null when not requested (<see cref="OutputRequest.QueryKeyValues"/>).</summary>
    public IReadOnlyList<SelfAttentionStates>? QueryKeyValues { get; init; }

    /// <summary>The padding mask of the batch (not owned by this output), or null.</summary>
    public Tensor? AttentionMask { get; }

    /// <summary>Number of layers whose outputs are present (hidden states count the embeddings separately).</summary>
    public int LayerCount => AttentionScores?.Count ?? AttentionProbabilities?.Count ?? Math.Max(0, (HiddenStates?.Count ?? 0) - 1);

    /// <summary>
    /// The same output on <paramref name="device"/> (a teacher on another device than the student hands its output over
    /// once per micro-batch); tensors already there are shared, not copied.
    /// </summary>
    public ModelOutput To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        static IReadOnlyList<Tensor>? Move(IReadOnlyList<Tensor>? list, Device d) => list?.Select(t => t.to(d)).ToArray();
        if (TopK is not null) return new ModelOutput(new TopKTargets(TopK.Probabilities.to(device), TopK.Indices.to(device), TopK.Temperature));
        return new ModelOutput(_logits!.to(device), Move(HiddenStates, device), Move(AttentionScores, device), Move(AttentionProbabilities, device), AttentionMask?.to(device))
        {
            QueryKeyValues = QueryKeyValues?.Select(s => new SelfAttentionStates(s.Queries.to(device), s.Keys.to(device), s.Values.to(device))).ToArray(),
        };
    }

    /// <summary>Moves every owned tensor to the dispose scope outside the current one.</summary>
    public ModelOutput MoveToOuterDisposeScope()
    {
        foreach (Tensor t in Owned()) t.MoveToOuterDisposeScope();
        return this;
    }

    /// <summary>Removes every owned tensor from dispose scopes; the caller must then dispose the output.</summary>
    public ModelOutput DetachFromDisposeScope()
    {
        foreach (Tensor t in Owned()) t.DetachFromDisposeScope();
        return this;
    }

    /// <summary>Disposes every owned tensor.</summary>
    public void Dispose()
    {
        foreach (Tensor t in Owned()) t.Dispose();
    }

    private IEnumerable<Tensor> Owned() =>
        (_logits is null ? [] : new[] { _logits })
            .Concat(TopK?.Tensors ?? [])
            .Concat(HiddenStates ?? [])
            .Concat(AttentionScores ?? [])
            .Concat(AttentionProbabilities ?? [])
            .Concat(QueryKeyValues?.SelectMany(s => new[] { s.Queries, s.Keys, s.Values }) ?? []);
}
