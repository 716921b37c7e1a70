using static TorchSharp.torch;

namespace KnowledgeDistillation.Generation;

/// <summary>
/// Prompts, left-padded, and optionally the dataset's own completions for them (right-padded): the input of
/// on-policy distillation, which replaces the completions by generated ones in some batches.
/// </summary>
/// <param name="PromptIds"><c>[B, P]</c> token ids, padded on the left.</param>
/// <param name="PromptMask"><c>[B, P]</c> true for real tokens; null when no prompt is padded.</param>
/// <param name="Completions"><c>[B, N]</c> the dataset's completions, padded on the right; null when there are none (every batch is then generated).</param>
/// <param name="CompletionMask"><c>[B, N]</c> true for real completion tokens; null means all are real.</param>
public sealed record PromptBatch(Tensor PromptIds, Tensor? PromptMask = null, Tensor? Completions = null, Tensor? CompletionMask = null);
