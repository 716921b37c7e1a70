using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>One micro-batch for the trainer.</summary>
/// <typeparam name="TInput">What the models consume: a <see cref="Tensor"/>, a <see cref="TokenBatch"/>, or your own type.</typeparam>
/// <param name="Inputs">The models' input. Tensors and <see cref="TokenBatch"/>es are moved to the trainer's device; other types must be on it already.</param>
/// <param name="Labels">Class or token labels, <c>[N]</c> or <c>[B, S]</c>; −100 marks positions to ignore.</param>
/// <param name="Mask">Optional rows/tokens to keep, shaped like the labels. A <see cref="TokenBatch"/>'s attention mask already
/// applies (the objective falls back to it), so give a mask only for other inputs, or to keep fewer rows than the attention mask does.</param>
public sealed record DistillationBatch<TInput>(TInput Inputs, Tensor? Labels = null, Tensor? Mask = null)
{
    /// <summary>
    /// True for batches generated on the fly: the trainer disposes their tensors once their step is done, so an
    /// endless generator does not pile up native memory. Leave false for batches reused across epochs.
    /// </summary>
    public bool DisposeAfterUse { get; init; }

    /// <summary>
    /// The examples' positions in the training set, <c>[N]</c> int64, for terms that keep state per example (CRD's memory
    /// bank), for inputs that are not token batches; a <see cref="TokenBatch"/> carries its own
    /// (<see cref="TokenBatch.ExampleIndices"/>), and giving both is refused.
    /// </summary>
    public Tensor? ExampleIndices { get; init; }
}
