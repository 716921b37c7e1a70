using KnowledgeDistillation.Transformers;
using TorchSharp;

namespace KnowledgeDistillation.Adapters;

/// <summary>The reference models' projections, as <see cref="LoraOptions.Targets"/> presets (heads are never included).</summary>
public static class LoraTargets
{
    /// <summary>GPT and BERT attention: the fused query-key-value projection and the output projection.</summary>
    public static IReadOnlyList<string> GptBertAttention { get; } = ["attention.qkv", "attention.output"];

    /// <summary>GPT and BERT attention and feed-forward projections.</summary>
    public static IReadOnlyList<string> GptBertAll { get; } = [.. GptBertAttention, "feed_forward.expand", "feed_forward.project"];

    /// <summary>Llama-family attention: query, key, value and output projections.</summary>
    public static IReadOnlyList<string> LlamaAttention { get; } = ["attention.query", "attention.key", "attention.value", "attention.output"];

    /// <summary>Llama-family attention and gated feed-forward projections.</summary>
    public static IReadOnlyList<string> LlamaAll { get; } = [.. LlamaAttention, "feed_forward.gate", "feed_forward.up", "feed_forward.down"];

    /// <summary>The preset for a reference model: attention only, or attention and feed-forward.</summary>
    /// <exception cref="ArgumentException">The model is not a <see cref="GptModel"/>, <see cref="BertModel"/> or <see cref="LlamaModel"/>.</exception>
    public static IReadOnlyList<string> For(torch.nn.Module model, bool feedForward = true) => model switch
    {
        GptModel or BertModel => feedForward ? GptBertAll : GptBertAttention,
        LlamaModel => feedForward ? LlamaAll : LlamaAttention,
        null => throw new ArgumentNullException(nameof(model)),
        _ => throw new ArgumentException($"No LoRA preset for {model.GetType().Name}; list its Linear layers' names in LoraOptions.Targets.", nameof(model)),
    };
}
