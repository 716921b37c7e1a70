namespace KnowledgeDistillation.Transformers;

/// <summary>Where each block's layer norms sit.</summary>
public enum NormPlacement
{
    /// <summary>x + f(norm(x)), with a final norm after the last block (GPT-2 and most modern models).</summary>
    Pre,

    /// <summary>norm(x + f(x)) (the original Transformer and BERT).</summary>
    Post,
}

/// <summary>The feed-forward non-linearity.</summary>
public enum FeedForwardActivation
{
    /// <summary>Exact GELU, x·Φ(x) (BERT).</summary>
    Gelu,

    /// <summary>The tanh approximation of GELU (GPT-2's "gelu_new").</summary>
    GeluTanh,

    /// <summary>SiLU, x·σ(x) (Llama-family gated feed-forward networks, "silu").</summary>
    Silu,
}

/// <summary>What the last entry of <c>ModelOutput.HiddenStates</c> holds in a pre-norm model.</summary>
public enum HiddenStateConvention
{
    /// <summary>Every entry after the first is a block's output; the last is taken before the final norm.</summary>
    BlockOutputs,

    /// <summary>As Hugging Face <c>transformers</c> returns them: the last entry is after the final norm (what a port of a
    /// Python recipe's <c>hidden_states[-1]</c> loss expects).</summary>
    HuggingFace,
}

/// <summary>The shape of a reference transformer. Derived records add what one kind of model needs.</summary>
public abstract record TransformerConfig
{
    /// <summary>Number of token ids.</summary>
    public required int VocabSize { get; init; }

    /// <summary>Longest sequence (number of learned positions).</summary>
    public int ContextLength { get; init; } = 128;

    /// <summary>Hidden width D.</summary>
    public int Width { get; init; } = 128;

    /// <summary>Attention heads; must divide <see cref="Width"/>.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Number of transformer blocks.</summary>
    public int Layers { get; init; } = 4;

    /// <summary>Inner width of the feed-forward network; 0 means 4 × <see cref="Width"/>.</summary>
    public int FeedForwardWidth { get; init; }

    /// <summary>Dropout on embeddings, attention probabilities and residual branches.</summary>
    public double Dropout { get; init; } = 0.1;

    /// <summary>Pre- or post-layer-norm blocks.</summary>
    public abstract NormPlacement NormPlacement { get; init; }

    /// <summary>The feed-forward non-linearity.</summary>
    public abstract FeedForwardActivation Activation { get; init; }

    /// <summary>ε of every layer norm (RMS norm in Llama-family models).</summary>
    public abstract double LayerNormEpsilon { get; init; }

    /// <summary>Whether the last hidden state of a pre-norm model is taken before or after the final norm.</summary>
    public HiddenStateConvention HiddenStates { get; init; } = HiddenStateConvention.BlockOutputs;

    /// <summary><see cref="FeedForwardWidth"/>, or 4 × <see cref="Width"/> when it is 0.</summary>
    public int EffectiveFeedForwardWidth => FeedForwardWidth == 0 ? 4 * Width : FeedForwardWidth;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public virtual void Validate()
    {
        RequirePositive(VocabSize, nameof(VocabSize));
        RequirePositive(ContextLength, nameof(ContextLength));
        RequirePositive(Width, nameof(Width));
        RequirePositive(Heads, nameof(Heads));
        RequirePositive(Layers, nameof(Layers));
        if (FeedForwardWidth < 0) throw new ArgumentException($"{nameof(FeedForwardWidth)} must be 0 (for 4 × Width) or positive; got {FeedForwardWidth}.", nameof(FeedForwardWidth));
        if (HeadsMustDivideWidth && Width % Heads != 0) throw new ArgumentException($"{nameof(Heads)} ({Heads}) must divide {nameof(Width)} ({Width}).", nameof(Heads));
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentException($"{nameof(Dropout)} must lie in [0, 1); got {Dropout}.", nameof(Dropout));
        if (!(LayerNormEpsilon > 0)) throw new ArgumentException($"{nameof(LayerNormEpsilon)} must be positive; got {LayerNormEpsilon}.", nameof(LayerNormEpsilon));
        if (FeedForwardWidth == 0 && Width > int.MaxValue / 4) throw new ArgumentException($"4 × {nameof(Width)} ({Width}) does not fit a feed-forward width; set {nameof(FeedForwardWidth)}.", nameof(Width));
        RequireMemoryFor(ApproximateParameters);
    }

    /// <summary>About how many parameters the model has (computed in floating point, so absurd sizes cannot overflow).</summary>
    internal abstract double ApproximateParameters { get; }

    /// <summary>The parameters of one block with attention width <paramref name="attention"/> and <paramref name="matrices"/> feed-forward matrices.</summary>
    private protected double BlockParameters(double attention, double keyValue, int matrices) =>
        (double)Width * attention * 2 + (double)Width * keyValue * 2 + (double)matrices * Width * EffectiveFeedForwardWidthUnchecked + 8.0 * Width;

    private double EffectiveFeedForwardWidthUnchecked => FeedForwardWidth == 0 ? 4.0 * Width : FeedForwardWidth;

    /// <summary>
    /// Refuses sizes whose float32 parameters alone would not fit this process's memory: libtorch would otherwise start
    /// allocating them and end the process natively (out of memory, <c>std::bad_alloc</c>) with no exception to catch.
    /// </summary>
    private void RequireMemoryFor(double parameters)
    {
        double bytes = parameters * 4;
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > available)
        {
            throw new ArgumentException(
                $"These sizes imply about {parameters:0.###e+0} parameters ({bytes / (1L << 30):N1} GiB in float32), more than the {available / (double)(1L << 30):N1} GiB of memory " +
                $"this process can use: {nameof(VocabSize)} {VocabSize}, {nameof(ContextLength)} {ContextLength}, {nameof(Width)} {Width}, {nameof(Layers)} {Layers}, " +
                $"{nameof(FeedForwardWidth)} {FeedForwardWidth}. Nothing was allocated.", nameof(Layers));
        }
    }

    /// <summary>Whether <see cref="Validate"/> requires <see cref="Heads"/> to divide <see cref="Width"/> (false where the head width is set separately).</summary>
    protected virtual bool HeadsMustDivideWidth => true;

    /// <summary>Throws when <paramref name="value"/> is not positive.</summary>
    protected static void RequirePositive(int value, string name)
    {
        if (value <= 0) throw new ArgumentException($"{name} must be positive; got {value}.", name);
    }
}

/// <summary>A GPT-style causal language model: token + position embeddings, pre-norm blocks, final norm, LM head.</summary>
public sealed record GptConfig : TransformerConfig
{
    /// <summary>Share the token embedding matrix with the LM head (GPT-2 does).</summary>
    public bool TieEmbeddings { get; init; } = true;

    /// <inheritdoc />
    public override NormPlacement NormPlacement { get; init; } = NormPlacement.Pre;

    /// <inheritdoc />
    public override FeedForwardActivation Activation { get; init; } = FeedForwardActivation.GeluTanh;

    /// <inheritdoc />
    public override double LayerNormEpsilon { get; init; } = 1e-5;

    internal override double ApproximateParameters =>
        (double)VocabSize * Width * (TieEmbeddings ? 1 : 2) + (double)ContextLength * Width + Layers * BlockParameters(Width, Width, 2);
}

/// <summary>What a <see cref="BertModel"/> computes on top of its encoder.</summary>
public enum BertHead
{
    /// <summary>Class logits <c>[B, NumLabels]</c> from the first token (through the pooler when there is one): <c>BertForSequenceClassification</c>.</summary>
    SequenceClassification,

    /// <summary>Token logits <c>[B, S, VocabSize]</c>: dense, activation, layer norm, then the word embeddings transposed plus a bias (<c>BertForMaskedLM</c>; the DistilBERT recipe trains with it).</summary>
    MaskedLM,

    /// <summary>No head: the logits are the last hidden state <c>[B, S, Width]</c> (<c>BertModel</c>'s <c>last_hidden_state</c>), for feature distillation.</summary>
    None,
}

/// <summary>A BERT-style bidirectional encoder with a classification, masked-LM or no head.</summary>
public sealed record BertConfig : TransformerConfig
{
    /// <summary>What the model computes on top of the encoder.</summary>
    public BertHead Head { get; init; } = BertHead.SequenceClassification;

    /// <summary>Number of classes of the classification head.</summary>
    public int NumLabels { get; init; } = 2;

    /// <summary>Number of segment (token type) ids.</summary>
    public int TypeVocabSize { get; init; } = 2;

    /// <summary>Classify through BERT's pooler (dense + tanh on the first token); false classifies the first token's hidden state directly, as DistilBERT does.</summary>
    public bool UsePooler { get; init; } = true;

    /// <inheritdoc />
    public override NormPlacement NormPlacement { get; init; } = NormPlacement.Post;

    /// <inheritdoc />
    public override FeedForwardActivation Activation { get; init; } = FeedForwardActivation.Gelu;

    /// <inheritdoc />
    public override double LayerNormEpsilon { get; init; } = 1e-12;

    /// <inheritdoc />
    public override void Validate()
    {
        RequirePositive(NumLabels, nameof(NumLabels));
        RequirePositive(TypeVocabSize, nameof(TypeVocabSize));
        base.Validate();
    }

    internal override double ApproximateParameters =>
        ((double)VocabSize + ContextLength + TypeVocabSize) * Width + Layers * BlockParameters(Width, Width, 2)
        + (double)Width * Width + (double)Width * Math.Max(NumLabels, Head == BertHead.MaskedLM ? VocabSize : 0);
}
