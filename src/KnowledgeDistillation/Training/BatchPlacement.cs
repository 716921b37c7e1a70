using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

/// <summary>Moves the parts of a batch the trainer knows about to its device.</summary>
internal static class BatchPlacement
{
    public static DistillationBatch<TInput> To<TInput>(DistillationBatch<TInput> batch, Device device)
    {
        object? inputs = batch.Inputs switch
        {
            Tensor t => t.to(device),
            TokenBatch b => new TokenBatch(b.InputIds.to(device), b.AttentionMask?.to(device), b.TokenTypeIds?.to(device), b.ExampleIndices), // indices are read on the host
            var other => other,
        };
        return new DistillationBatch<TInput>((TInput)inputs!, batch.Labels?.to(device), batch.Mask?.to(device));
    }

    /// <summary>Disposes the tensors of a batch marked <see cref="DistillationBatch{TInput}.DisposeAfterUse"/>.</summary>
    public static void Release<TInput>(DistillationBatch<TInput> batch)
    {
        if (!batch.DisposeAfterUse) return;
        switch (batch.Inputs)
        {
            case Tensor t:
                t.Dispose();
                break;
            case TokenBatch b:
                b.InputIds.Dispose();
                b.AttentionMask?.Dispose();
                b.TokenTypeIds?.Dispose();
                b.ExampleIndices?.Dispose();
                break;
        }
        batch.Labels?.Dispose();
        batch.Mask?.Dispose();
    }

    /// <summary>The rows a batch's logit terms average over: labels ≠ −100 (and the mask, when shaped like the labels), else the mask.</summary>
    public static Tensor? KeptRows<TInput>(DistillationBatch<TInput> batch)
    {
        Tensor? keep = batch.Labels?.ne(-100);
        if (batch.Mask is { } mask && (keep is null || mask.shape.SequenceEqual(keep.shape)))
        {
            Tensor m = mask.dtype == ScalarType.Bool ? mask : mask.ne(0);
            keep = keep is null ? m : keep.logical_and(m);
        }
        return keep;
    }
}
