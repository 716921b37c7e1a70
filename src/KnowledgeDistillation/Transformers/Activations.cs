using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Transformers;

/// <summary>Applies a <see cref="FeedForwardActivation"/>.</summary>
internal static class Activations
{
    public static Tensor Apply(Tensor x, FeedForwardActivation activation) => activation switch
    {
        FeedForwardActivation.Gelu => F.gelu(x),
        FeedForwardActivation.GeluTanh => F.gelu(x, GELU.Approximate.tanh, false),
        FeedForwardActivation.Silu => F.silu(x),
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, "Unknown activation."),
    };
}
