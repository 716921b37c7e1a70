using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>
/// One layer's self-attention inputs as the projections produce them, every head side by side: queries
/// <c>[B, S, H·d]</c>, keys and values <c>[B, S, H_kv·d]</c> (H_kv = H except under grouped-query attention). Rotary
/// position embeddings are not applied (MiniLM's relations compare the projections themselves). With a key/value
/// cache, only the tokens of the current pass.
/// </summary>
/// <param name="Queries">Queries, <c>[B, S, H·d]</c>.</param>
/// <param name="Keys">Keys, <c>[B, S, H_kv·d]</c>.</param>
/// <param name="Values">Values, <c>[B, S, H_kv·d]</c>.</param>
public sealed record SelfAttentionStates(Tensor Queries, Tensor Keys, Tensor Values);
