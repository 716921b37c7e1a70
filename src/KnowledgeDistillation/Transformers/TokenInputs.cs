using KnowledgeDistillation.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>Checks a <see cref="TokenBatch"/> against a model's configuration before any native call.</summary>
internal static class TokenInputs
{
    /// <param name="batch">The batch.</param>
    /// <param name="config">The model's configuration.</param>
    /// <param name="typeVocabSize">Token type ids allowed (BERT), or null.</param>
    /// <param name="past">Tokens already in the key/value cache (decoders): the attention mask covers past + S.</param>
    /// <param name="acceptsPositions">Whether the model reads <see cref="TokenBatch.PositionIds"/> (decoders).</param>
    public static void Validate(TokenBatch batch, TransformerConfig config, int? typeVocabSize, long past = 0, bool acceptsPositions = false)
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
        if (length < 1 || past + length > config.ContextLength)
        {
            string cached = past > 0 ? $" after {past} cached tokens" : "";
            throw new ArgumentException($"InputIds has sequence length {length}{cached}; the model's ContextLength allows 1 to {config.ContextLength - past}.", nameof(batch));
        }
        if (past > 0 && batch.AttentionMask is { } full)
        {
            long[] expected = [ids.shape[0], past + length];
            if (!full.shape.SequenceEqual(expected))
            {
                throw new ArgumentException($"With {past} cached tokens the AttentionMask must cover them and the new ones, {Shapes.Describe(expected)}; got {Shapes.Describe(full.shape)}.", nameof(batch));
            }
        }
        else
        {
            RequireSameShape(batch.AttentionMask, "AttentionMask", ids, allowBool: true);
        }
        if (batch.PositionIds is { } positions)
        {
            if (!acceptsPositions) throw new ArgumentException("PositionIds were given, but this model does not read them (encoder positions are always 0 … S − 1).", nameof(batch));
            RequireSameShape(positions, "PositionIds", ids, allowBool: false);
            if (positions.device_type == DeviceType.CPU) RequireRange(positions, "PositionIds", config.ContextLength, "ContextLength");
        }
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
