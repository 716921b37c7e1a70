using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// One transformer layer: self-attention and a feed-forward network, each in a residual branch with dropout,
/// with pre- or post-layer-norm placement.
/// </summary>
/// <remarks>Parameters: <c>attention</c>, <c>attention_norm</c>, <c>feed_forward</c>, <c>feed_forward_norm</c>.</remarks>
public sealed class TransformerBlock : nn.Module<Tensor, Tensor>
{
    private readonly SelfAttention attention;
    private readonly LayerNorm attention_norm;
    private readonly FeedForward feed_forward;
    private readonly LayerNorm feed_forward_norm;
    private readonly Dropout residual_dropout;
    private readonly NormPlacement _placement;

    /// <summary>Creates a block shaped by <paramref name="config"/>.</summary>
    public TransformerBlock(TransformerConfig config) : base(nameof(TransformerBlock))
    {
        attention = new SelfAttention(config.Width, config.Heads, config.Dropout);
        attention_norm = nn.LayerNorm(config.Width, config.LayerNormEpsilon);
        feed_forward = new FeedForward(config.Width, config.EffectiveFeedForwardWidth, config.Activation);
        feed_forward_norm = nn.LayerNorm(config.Width, config.LayerNormEpsilon);
        residual_dropout = nn.Dropout(config.Dropout);
        _placement = config.NormPlacement;
        RegisterComponents();
    }

    /// <summary>The block without masks (bidirectional).</summary>
    public override Tensor forward(Tensor x) => Apply(x, null, false, false).Output;

    /// <summary>Runs the block; see <see cref="SelfAttention.Attend"/> for the arguments.</summary>
    public AttentionResult Apply(Tensor x, Tensor? additiveMask, bool causal, bool returnMaps, KeyValueCache? cache = null, int layer = 0, bool returnStates = false)
    {
        if (_placement == NormPlacement.Pre)
        {
            AttentionResult a = attention.Attend(attention_norm.forward(x), additiveMask, causal, returnMaps, cache, layer, returnStates);
            x = x + residual_dropout.forward(a.Output);
            x = x + residual_dropout.forward(feed_forward.forward(feed_forward_norm.forward(x)));
            return a with { Output = x };
        }
        AttentionResult post = attention.Attend(x, additiveMask, causal, returnMaps, cache, layer, returnStates);
        x = attention_norm.forward(x + residual_dropout.forward(post.Output));
        x = feed_forward_norm.forward(x + residual_dropout.forward(feed_forward.forward(x)));
        return post with { Output = x };
    }
}
