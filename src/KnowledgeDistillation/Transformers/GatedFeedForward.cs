using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>The gated feed-forward network of Llama-family models (SwiGLU with SiLU): <c>down(act(gate(x)) ⊙ up(x))</c>, D → F → D.</summary>
/// <remarks>Parameters: <c>gate</c>, <c>up</c> (D → F) and <c>down</c> (F → D).</remarks>
public sealed class GatedFeedForward : nn.Module<Tensor, Tensor>
{
    private readonly Linear gate;
    private readonly Linear up;
    private readonly Linear down;
    private readonly FeedForwardActivation _activation;

    /// <summary>Creates the network.</summary>
    public GatedFeedForward(int width, int innerWidth, FeedForwardActivation activation, bool bias) : base(nameof(GatedFeedForward))
    {
        gate = nn.Linear(width, innerWidth, hasBias: bias);
        up = nn.Linear(width, innerWidth, hasBias: bias);
        down = nn.Linear(innerWidth, width, hasBias: bias);
        _activation = activation;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => down.call(Activations.Apply(gate.call(x), _activation) * up.call(x));
}
