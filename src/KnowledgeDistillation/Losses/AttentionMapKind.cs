namespace KnowledgeDistillation.Losses;

/// <summary>What the attention maps given to <see cref="AttentionMseLoss"/> hold.</summary>
public enum AttentionMapKind
{
    /// <summary>Attention probabilities, softmax over keys (each row sums to 1).</summary>
    Probabilities,

    /// <summary>
    /// Pre-softmax scores QKᵀ/√d (TinyBERT distils these). Masked positions usually hold -inf or a large negative
    /// additive mask; cells at or below <see cref="AttentionMseLoss.MaskedScoreThreshold"/> in either map are left out.
    /// </summary>
    Scores,
}
