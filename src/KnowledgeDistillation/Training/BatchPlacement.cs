using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

/// <summary>Moves the parts of a batch the trainer knows about to its device.</summary>
internal static class BatchPlacement
{
    /// <exception cref="ArgumentException">The batch gives example indices twice, in itself and in its token batch.</exception>
    public static DistillationBatch<TInput> To<TInput>(DistillationBatch<TInput> batch, Device device)
    {
        if (batch.ExampleIndices is not null && batch.Inputs is TokenBatch { ExampleIndices: not null })
        {
            throw new ArgumentException(
                "The batch gives its example indices twice, as DistillationBatch.ExampleIndices and as TokenBatch.ExampleIndices; give them once, in the TokenBatch.", nameof(batch));
        }
        return new DistillationBatch<TInput>(Inputs(batch.Inputs, device), batch.Labels?.to(device), batch.Mask?.to(device))
        {
            ExampleIndices = (batch.ExampleIndices ?? (batch.Inputs as TokenBatch)?.ExampleIndices)?.to(device),
        };
    }

    /// <summary>A batch's inputs on <paramref name="device"/> (a teacher on a device of its own reads them there).</summary>
    public static TInput Inputs<TInput>(TInput batchInputs, Device device)
    {
        object? inputs = batchInputs switch
        {
            Tensor t => t.to(device),
            TokenBatch b => On(b, device), // example indices are read on the host
            CrossTokenizer.CrossTokenizerBatch c => new CrossTokenizer.CrossTokenizerBatch(On(c.Student, device), On(c.Teacher, device), c.StudentLabels.to(device), c.TeacherLabels.to(device), c.Alignment)
            {
                StudentLabelRows = c.StudentLabelRows?.to(device),
                TeacherLabelRows = c.TeacherLabelRows?.to(device),
            },
            var other => other,
        };
        return (TInput)inputs!;
    }

    private static TokenBatch On(TokenBatch b, Device device) =>
        new(b.InputIds.to(device), b.AttentionMask?.to(device), b.TokenTypeIds?.to(device), b.ExampleIndices) { PositionIds = b.PositionIds?.to(device) };

    private static void Dispose(TokenBatch b)
    {
        b.InputIds.Dispose();
        b.AttentionMask?.Dispose();
        b.TokenTypeIds?.Dispose();
        b.ExampleIndices?.Dispose();
        b.PositionIds?.Dispose();
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
                Dispose(b);
                break;
            case CrossTokenizer.CrossTokenizerBatch c:
                Dispose(c.Student);
                Dispose(c.Teacher);
                c.StudentLabels.Dispose();
                c.TeacherLabels.Dispose();
                c.StudentLabelRows?.Dispose();
                c.TeacherLabelRows?.Dispose();
                break;
        }
        batch.Labels?.Dispose();
        batch.Mask?.Dispose();
        batch.ExampleIndices?.Dispose();
    }

    /// <summary>
    /// The rows a batch's logit terms average over, for token-normalised accumulation: labels ≠ the ignore index, and the
    /// batch's mask; without a mask, the token batch's attention mask (the losses' fallback) when it has one entry per
    /// label (or there are no labels). Null when the batch carries none of them.
    /// </summary>
    /// <exception cref="ArgumentException">The batch's mask is not shaped like its labels; the message names both shapes.</exception>
    public static Tensor? KeptRows<TInput>(DistillationBatch<TInput> batch)
    {
        Tensor? keep = batch.Labels?.ne(Labels.IgnoreIndex);
        if (batch.Mask is { } explicitMask && keep is not null && !explicitMask.shape.SequenceEqual(keep.shape))
        {
            throw new ArgumentException(
                $"The batch's Mask has shape {Shapes.Describe(explicitMask.shape)} but its Labels have shape {Shapes.Describe(keep.shape)}; the mask needs one entry per label.",
                nameof(batch));
        }
        Tensor? mask = batch.Mask ?? (batch.Inputs as TokenBatch)?.AttentionMask;
        if (mask is not null && (keep is null || mask.shape.SequenceEqual(keep.shape)))
        {
            Tensor m = mask.dtype == ScalarType.Bool ? mask : mask.ne(0);
            keep = keep is null ? m : keep.logical_and(m);
        }
        return keep;
    }
}
