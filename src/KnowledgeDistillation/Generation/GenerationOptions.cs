namespace KnowledgeDistillation.Generation;

/// <summary>How <see cref="TextGeneration.Generate"/> picks tokens.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens appended to each prompt.</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>Sample from the (filtered, tempered) distribution; false takes the most likely token (greedy).</summary>
    public bool Sample { get; init; }

    /// <summary>Divides the logits before sampling; below 1 sharpens, above 1 flattens.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Sample among the k most likely tokens only; 0 keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling: keep the most likely tokens whose probabilities sum to at least p (the first is always kept); 1 keeps all.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>A row ends after producing this token; later positions hold <see cref="PadTokenId"/>. Null: rows run to <see cref="MaxNewTokens"/>.</summary>
    public int? EosTokenId { get; init; }

    /// <summary>The token written after a row's end (and the one left padding uses, for the caller's convenience).</summary>
    public int PadTokenId { get; init; }

    /// <summary>Seed of the sampling generator: the same seed, model and prompts give the same tokens, whatever the global RNG did.</summary>
    public long Seed { get; init; }

    internal void Validate()
    {
        if (MaxNewTokens < 1) throw new ArgumentException($"{nameof(MaxNewTokens)} must be at least 1; got {MaxNewTokens}.", nameof(MaxNewTokens));
        if (!(Temperature > 0) || double.IsInfinity(Temperature)) throw new ArgumentException($"{nameof(Temperature)} must be positive and finite; got {Temperature}.", nameof(Temperature));
        if (TopK < 0) throw new ArgumentException($"{nameof(TopK)} must be 0 (off) or positive; got {TopK}.", nameof(TopK));
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"{nameof(TopP)} must lie in (0, 1]; got {TopP}.", nameof(TopP));
        if (EosTokenId is < 0) throw new ArgumentException($"{nameof(EosTokenId)} must be a token id (0 or more); got {EosTokenId}.", nameof(EosTokenId));
        if (PadTokenId < 0) throw new ArgumentException($"{nameof(PadTokenId)} must be a token id (0 or more); got {PadTokenId}.", nameof(PadTokenId));
    }
}
