namespace KnowledgeDistillation.Pretrained;

/// <summary>What loading a checkpoint into a model did.</summary>
/// <param name="Loaded">The model's tensors that were written, by the model's names.</param>
/// <param name="Unused">Checkpoint entries that nothing consumed (e.g. a pre-training head); not an error.</param>
/// <param name="Ignored">Checkpoint entries skipped on purpose (derived buffers such as GPT-2's causal mask, or a tied LM head that equals the embeddings).</param>
public sealed record WeightLoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Unused, IReadOnlyList<string> Ignored)
{
    /// <summary>
    /// The model's head tensors the checkpoint did not have, left as initialised (a classifier on a checkpoint of the
    /// bare encoder, as Hugging Face's "newly initialized" warning reports). Train them before use.
    /// </summary>
    public IReadOnlyList<string> Initialized { get; init; } = [];

    /// <summary>What was assumed or converted: settings taken from the model because the checkpoint had no
    /// <c>config.json</c>, dtypes converted on load, fields of <c>config.json</c> that were read but have no effect.</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}
