using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Students;

/// <summary>
/// A reference model's shape as <see cref="MemoryPlan"/> counts it: per block, the floats per token its forward pass
/// makes and those autograd keeps for the backward pass, derived from the blocks' code (GptModel, BertModel and
/// LlamaModel with PyTorch's fused attention, which keeps its output and log-sum-exp, not the [S, S] probabilities).
/// </summary>
internal sealed record MemoryBlockShape(int Layers, int Width, int FeedForward, long Classes, bool TokenLevelLogits, bool Checkpointing,
    long MadePerToken, long KeptPerToken, long StackKept, long EmbeddingMade)
{
    public static MemoryBlockShape Of(nn.Module model, string parameter) => model switch
    {
        GptModel g => Standard(g.Config, g.Config.VocabSize, true, g.ActivationCheckpointing, embeddingMade: 2),
        BertModel b => Standard(b.Config,
            b.Config.Head switch { BertHead.MaskedLM => b.Config.VocabSize, BertHead.SequenceClassification => b.Config.NumLabels, _ => b.Config.Width },
            b.Config.Head != BertHead.SequenceClassification, b.ActivationCheckpointing, embeddingMade: 5),
        LlamaModel l => Llama(l.Config, l.ActivationCheckpointing),
        _ => throw new ArgumentException($"{parameter} must be a GptModel, BertModel or LlamaModel to estimate its activations; got {model.GetType().Name}.", parameter),
    };

    /// <summary>
    /// GPT (pre-norm) and BERT (post-norm) blocks. Made: the norms' outputs (2W), query-key-value (3W), attention output,
    /// its merged copy and projection (3W), the two residual sums (2W), the feed-forward expansion, activation (2F) and
    /// projection (W): 11W + 2F. Kept: all but the two projections' outputs (which only a sum reads): 9W + 2F, plus the
    /// attention's log-sum-exp (H). Outside the blocks, kept: the embedding sum and the final (GPT) or embedding (BERT) norm's
    /// output; made and held until the forward pass ends: GPT's token embeddings and their sum with the positions (2W),
    /// BERT's word and token-type embeddings, their two sums and the norm (5W).
    /// </summary>
    private static MemoryBlockShape Standard(TransformerConfig c, long classes, bool tokenLevel, bool checkpointing, long embeddingMade) =>
        new(c.Layers, c.Width, c.EffectiveFeedForwardWidth, classes, tokenLevel, checkpointing,
            MadePerToken: 11L * c.Width + 2L * c.EffectiveFeedForwardWidth + c.Heads,
            KeptPerToken: 9L * c.Width + 2L * c.EffectiveFeedForwardWidth + c.Heads,
            StackKept: 2L * c.Width,
            EmbeddingMade: embeddingMade * c.Width);

    /// <summary>
    /// Llama blocks (query width Q = H·d, key-value width K = H_kv·d). Made: each RMS norm's square, normalised input and
    /// output (3W, twice); queries and keys and values (Q + 2K); the rotary embedding's negated half, rotated copy, two
    /// products and sum (4.5 per width, for queries and keys); keys and values repeated to every head (2Q, only when
    /// H_kv &lt; H); attention output and its merged copy (2Q); the output projection and residual sum (2W); gate, SiLU, up
    /// and product (4F); the down projection and residual sum (2W). Kept: each norm's normalised input and output (2W,
    /// twice), the rotated queries, the keys and values attention reads (2Q repeated, else the rotated keys and values, 2K),
    /// the attention output and merged copy (2Q), the residual sums (2W) and the four feed-forward tensors (4F).
    /// Outside the blocks: the embeddings (made and kept) and the final norm's two tensors (kept).
    /// </summary>
    private static MemoryBlockShape Llama(LlamaConfig c, bool checkpointing)
    {
        long q = (long)c.Heads * c.EffectiveHeadWidth, k = (long)c.EffectiveKeyValueHeads * c.EffectiveHeadWidth;
        bool repeated = c.EffectiveKeyValueHeads < c.Heads;
        long f = c.EffectiveFeedForwardWidth;
        long made = 6L * c.Width + q + 2 * k + (9 * (q + k) / 2) + (repeated ? 2 * q : 0) + 2 * q + 4L * c.Width + 4 * f;
        long kept = 4L * c.Width + q + (repeated ? 2 * q : 2 * k) + 2 * q + 2L * c.Width + 4 * f + c.Heads;
        return new(c.Layers, c.Width, c.EffectiveFeedForwardWidth, c.VocabSize, true, checkpointing, made + c.Heads, kept, StackKept: 3L * c.Width, EmbeddingMade: c.Width);
    }
}
