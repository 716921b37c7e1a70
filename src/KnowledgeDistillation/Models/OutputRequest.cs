namespace KnowledgeDistillation.Models;

/// <summary>
/// What a forward pass should return besides the logits. Models compute only what is asked for: a request for
/// logits alone takes the fast path (fused attention, no per-layer tensors kept).
/// </summary>
/// <param name="HiddenStates">Return the hidden state after the embeddings and after every layer.</param>
/// <param name="AttentionScores">Return every layer's pre-softmax attention scores, <c>[B, H, S, S]</c>.</param>
/// <param name="AttentionProbabilities">Return every layer's attention probabilities, <c>[B, H, S, S]</c>.</param>
/// <param name="QueryKeyValues">Return every layer's self-attention queries, keys and values (<see cref="SelfAttentionStates"/>), for MiniLM's relation distillation.</param>
public sealed record OutputRequest(bool HiddenStates = false, bool AttentionScores = false, bool AttentionProbabilities = false, bool QueryKeyValues = false)
{
    /// <summary>Logits only.</summary>
    public static OutputRequest LogitsOnly { get; } = new();

    /// <summary>Logits, hidden states and both forms of attention.</summary>
    public static OutputRequest Everything { get; } = new(true, true, true);

    /// <summary>Whether any attention map is requested.</summary>
    public bool AnyAttention => AttentionScores || AttentionProbabilities;
}
