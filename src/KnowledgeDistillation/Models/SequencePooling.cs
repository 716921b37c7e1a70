using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>How a sequence of hidden states <c>[N, S, H]</c> becomes one vector per text <c>[N, H]</c>.</summary>
public enum SequencePooling
{
    /// <summary>No pooling: the sequence is kept.</summary>
    None,

    /// <summary>The mean over the real tokens (attention mask 1), as sentence-transformers' mean pooling (all-MiniLM-L6-v2).</summary>
    Mean,

    /// <summary>The first token's state: BERT's [CLS] (snowflake-arctic-embed, BGE).</summary>
    Cls,

    /// <summary>The last real token's state (decoder embedding models; rows padded on the right).</summary>
    LastToken,
}

/// <summary>Applies a <see cref="SequencePooling"/>: the same code pools a teacher's output and a student's, so both mean the same thing.</summary>
public static class Pooling
{
    /// <summary>
    /// Pools <paramref name="hidden"/> <c>[N, S, H]</c> over the real tokens of <paramref name="mask"/> <c>[N, S]</c>
    /// (1 = real; null: every token is real). Mean pooling divides by the real-token count, at least 1e-9, as
    /// sentence-transformers does, so an all-padding row pools to zeros rather than NaN.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes do not fit (the message names both).</exception>
    public static Tensor Apply(SequencePooling kind, Tensor hidden, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        if (kind == SequencePooling.None) return hidden.alias();
        if (hidden.dim() != 3) throw new ArgumentException($"Pooling {kind} needs hidden states [N, S, H]; got [{string.Join(", ", hidden.shape)}].", nameof(hidden));
        if (mask is not null && (mask.dim() != 2 || mask.shape[0] != hidden.shape[0] || mask.shape[1] != hidden.shape[1]))
        {
            throw new ArgumentException($"The mask must be [N, S] = [{hidden.shape[0]}, {hidden.shape[1]}]; got [{string.Join(", ", mask.shape)}].", nameof(mask));
        }
        using var scope = NewDisposeScope();
        Tensor m = (mask ?? ones(hidden.shape[0], hidden.shape[1], device: hidden.device)).to(hidden.dtype).to(hidden.device);
        Tensor pooled = kind switch
        {
            SequencePooling.Mean => (hidden * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim: true).clamp_min(1e-9),
            SequencePooling.Cls => hidden.select(1, 0),
            SequencePooling.LastToken => hidden.gather(1, (m.sum(1).to(ScalarType.Int64) - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, hidden.shape[2])).squeeze(1),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Not a SequencePooling value."),
        };
        return pooled.MoveToOuterDisposeScope();
    }
}
