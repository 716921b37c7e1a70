using KnowledgeDistillation.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>Checks a <see cref="TokenBatch"/> against a model's configuration before any native call.</summary>
internal static class TokenInputs
{
    public static void Validate(TokenBatch batch, TransformerConfig config, int? typeVocabSize)
    {
        ArgumentNullException.ThrowIfNull(batch);
        Tensor ids = batch.InputIds ?? throw new ArgumentException("InputIds is required.", nameof(batch));
        if (!is_integral(ids.dtype) || ids.dtype == ScalarType.Bool || ids.dim() != 2)
        {
            throw new ArgumentException($"InputIds must be integer token ids of shape [B, S]; got {ids.dtype} with shape {Shapes.Describe(ids.shape)}.", nameof(batch));
        }
        if (ids.shape[0] < 1)
        {
            throw new ArgumentException($"InputIds holds no sequence (shape {Shapes.Describe(ids.shape)}); a batch needs at least one.", nameof(batch));
        }
        long length = ids.shape[1];
        if (length < 1 || length > config.ContextLength)
        {
            throw new ArgumentException($"InputIds has sequence length {length}; the model's ContextLength allows 1 to {config.ContextLength}.", nameof(batch));
        }
        RequireSameShape(batch.AttentionMask, "AttentionMask", ids, allowBool: true);
        RequireSameShape(batch.TokenTypeIds, "TokenTypeIds", ids, allowBool: false);
        if (batch.TokenTypeIds is not null && typeVocabSize is null)
        {
            throw new ArgumentException("TokenTypeIds were given, but this model has no token type embeddings.", nameof(batch));
        }
        if (ids.device_type == DeviceType.CPU) RequireRange(ids, "InputIds", config.VocabSize, "VocabSize");
        if (batch.TokenTypeIds is { device_type: DeviceType.CPU } types) RequireRange(types, "TokenTypeIds", typeVocabSize!.Value, "TypeVocabSize");
    }

    private static void RequireSameShape(Tensor? tensor, string name, Tensor ids, bool allowBool)
    {
        if (tensor is null) return;
        if (!tensor.shape.SequenceEqual(ids.shape))
        {
            throw new ArgumentException($"{name} must have the shape of InputIds, {Shapes.Describe(ids.shape)}; got {Shapes.Describe(tensor.shape)}.", "batch");
        }
        bool ok = is_integral(tensor.dtype) && (allowBool || tensor.dtype != ScalarType.Bool);
        if (!ok) throw new ArgumentException($"{name} must be {(allowBool ? "bool or " : "")}integer; got {tensor.dtype}.", "batch");
    }

    private static void RequireRange(Tensor values, string name, int size, string setting)
    {
        using var scope = NewDisposeScope();
        long min = values.min().item<long>(), max = values.max().item<long>();
        if (min < 0 || max >= size)
        {
            throw new ArgumentException($"{name} must lie in [0, {size}) ({setting}); found {(min < 0 ? min : max)}.", "batch");
        }
    }

}
