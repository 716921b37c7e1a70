using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>One Llama-family layer: <c>x + attention(norm(x))</c>, then <c>x + feed_forward(norm(x))</c>, with RMS norms.</summary>
/// <remarks>Parameters: <c>attention_norm</c>, <c>attention</c>, <c>feed_forward_norm</c>, <c>feed_forward</c>.</remarks>
public sealed class LlamaBlock : nn.Module<Tensor, Tensor>
{
    private readonly RmsNorm attention_norm;
    private readonly GroupedQueryAttention attention;
    private readonly RmsNorm feed_forward_norm;
    private readonly GatedFeedForward feed_forward;
    private readonly LlamaConfig _config;

    /// <summary>Creates a block shaped by <paramref name="config"/>.</summary>
    public LlamaBlock(LlamaConfig config) : base(nameof(LlamaBlock))
    {
        ArgumentNullException.ThrowIfNull(config);
        _config = config;
        attention_norm = new RmsNorm(config.Width, config.LayerNormEpsilon);
        attention = new GroupedQueryAttention(config);
        feed_forward_norm = new RmsNorm(config.Width, config.LayerNormEpsilon);
        feed_forward = new GatedFeedForward(config.Width, config.EffectiveFeedForwardWidth, config.Activation, config.FeedForwardBias);
        RegisterComponents();
    }

    /// <summary>The block on <c>[B, S, D]</c> at positions 0 … S − 1, causal.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        (Tensor cos, Tensor sin) = RotaryEmbedding.Angles(x.shape[1], _config.EffectiveHeadWidth, _config.RopeTheta, x.device, x.dtype);
        return Apply(x, null, cos, sin, false).Output.MoveToOuterDisposeScope();
    }

    /// <summary>Runs the block; see <see cref="GroupedQueryAttention.Attend"/> for the arguments.</summary>
    public AttentionResult Apply(Tensor x, Tensor? additiveMask, Tensor cos, Tensor sin, bool returnMaps, KeyValueCache? cache = null, int layer = 0, bool returnStates = false)
    {
        AttentionResult a = attention.Attend(attention_norm.forward(x), additiveMask, cos, sin, returnMaps, cache, layer, returnStates);
        x = x + a.Output;
        x = x + feed_forward.forward(feed_forward_norm.forward(x));
        return a with { Output = x };
    }
}
