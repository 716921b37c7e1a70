namespace KnowledgeDistillation.Transformers.Checkpoints;

/// <summary>What loading a checkpoint into a model did.</summary>
/// <param name="Loaded">The model's tensors that were written, by the model's names.</param>
/// <param name="Unused">Checkpoint entries that nothing consumed (e.g. a pre-training head); not an error.</param>
/// <param name="Ignored">Checkpoint entries skipped on purpose (derived buffers such as GPT-2's causal mask, or a tied LM head).</param>
public sealed record CheckpointLoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Unused, IReadOnlyList<string> Ignored);
