namespace KnowledgeDistillation.Transformers;

/// <summary>Which Hugging Face architecture a <see cref="LlamaConfig"/> stands for (they differ in biases and sliding windows).</summary>
public enum DecoderFamily
{
    /// <summary><c>LlamaForCausalLM</c> (<c>model_type</c> "llama").</summary>
    Llama,

    /// <summary><c>Qwen2ForCausalLM</c>: biases on query, key and value.</summary>
    Qwen2,

    /// <summary><c>MistralForCausalLM</c>: an optional sliding window.</summary>
    Mistral,
}

/// <summary>
/// A Llama-family decoder (Llama, Qwen2, Mistral): RMSNorm, rotary position embeddings, a gated (SwiGLU)
/// feed-forward network and grouped-query attention. Defaults are Llama's where the Hugging Face configuration has
/// one; <see cref="TransformerConfig.ContextLength"/> bounds the sequence length only (positions are rotary, not
/// learned).
/// </summary>
public sealed record LlamaConfig : TransformerConfig
{
    /// <summary>Creates a configuration with Llama's defaults (no dropout, untied embeddings).</summary>
    public LlamaConfig() => Dropout = 0;

    /// <summary>The Hugging Face architecture this configuration is saved as.</summary>
    public DecoderFamily Family { get; init; } = DecoderFamily.Llama;

    /// <summary>Key/value heads of grouped-query attention (<c>num_key_value_heads</c>); 0 means one per query head.
    /// Must divide <see cref="TransformerConfig.Heads"/>.</summary>
    public int KeyValueHeads { get; init; }

    /// <summary>Width of one attention head (<c>head_dim</c>); 0 means Width / Heads.</summary>
    public int HeadWidth { get; init; }

    /// <summary>Base θ of the rotary position embedding (<c>rope_theta</c>).</summary>
    public double RopeTheta { get; init; } = 10_000;

    /// <summary>Biases on the query, key and value projections (Qwen2 has them; Llama's <c>attention_bias</c> sets this and <see cref="OutputBias"/>).</summary>
    public bool QueryKeyValueBias { get; init; }

    /// <summary>A bias on the attention output projection (Llama's <c>attention_bias</c>).</summary>
    public bool OutputBias { get; init; }

    /// <summary>Biases on the three feed-forward projections (Llama's <c>mlp_bias</c>).</summary>
    public bool FeedForwardBias { get; init; }

    /// <summary>Share the token embedding matrix with the LM head (<c>tie_word_embeddings</c>).</summary>
    public bool TieEmbeddings { get; init; }

    /// <summary>Mistral's sliding-window attention: a query sees at most this many keys, itself included; null for full causal attention.</summary>
    public int? SlidingWindow { get; init; }

    /// <inheritdoc />
    public override NormPlacement NormPlacement { get; init; } = NormPlacement.Pre;

    /// <inheritdoc />
    public override FeedForwardActivation Activation { get; init; } = FeedForwardActivation.Silu;

    /// <inheritdoc />
    public override double LayerNormEpsilon { get; init; } = 1e-6;

    /// <summary><see cref="KeyValueHeads"/>, or <see cref="TransformerConfig.Heads"/> when it is 0.</summary>
    public int EffectiveKeyValueHeads => KeyValueHeads == 0 ? Heads : KeyValueHeads;

    /// <summary><see cref="HeadWidth"/>, or Width / Heads when it is 0.</summary>
    public int EffectiveHeadWidth => HeadWidth == 0 ? Width / Heads : HeadWidth;

    /// <inheritdoc />
    protected override bool HeadsMustDivideWidth => HeadWidth == 0;

    /// <inheritdoc />
    internal override double ApproximateParameters
    {
        get
        {
            double headWidth = HeadWidth == 0 ? Width / (double)Math.Max(Heads, 1) : HeadWidth;
            double keyValueHeads = KeyValueHeads == 0 ? Heads : KeyValueHeads;
            return (double)VocabSize * Width * (TieEmbeddings ? 1 : 2) + Layers * BlockParameters(Heads * headWidth, keyValueHeads * headWidth, 3);
        }
    }

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        if (KeyValueHeads < 0) throw new ArgumentException($"{nameof(KeyValueHeads)} must be 0 (one per query head) or positive; got {KeyValueHeads}.", nameof(KeyValueHeads));
        if (Heads % EffectiveKeyValueHeads != 0)
        {
            throw new ArgumentException($"{nameof(KeyValueHeads)} ({EffectiveKeyValueHeads}) must divide {nameof(Heads)} ({Heads}).", nameof(KeyValueHeads));
        }
        if (HeadWidth < 0) throw new ArgumentException($"{nameof(HeadWidth)} must be 0 (Width / Heads) or positive; got {HeadWidth}.", nameof(HeadWidth));
        if (EffectiveHeadWidth % 2 != 0) throw new ArgumentException($"The head width must be even for rotary embeddings; got {EffectiveHeadWidth}.", nameof(HeadWidth));
        if (!(RopeTheta > 0) || double.IsInfinity(RopeTheta)) throw new ArgumentException($"{nameof(RopeTheta)} must be positive and finite; got {RopeTheta}.", nameof(RopeTheta));
        if (SlidingWindow is < 1) throw new ArgumentException($"{nameof(SlidingWindow)} must be null or positive; got {SlidingWindow}.", nameof(SlidingWindow));
        if (NormPlacement != NormPlacement.Pre) throw new ArgumentException($"Llama-family models are pre-norm; {nameof(NormPlacement)} {NormPlacement} is not supported.", nameof(NormPlacement));
    }
}
