using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>The position-wise feed-forward network: <c>project(activation(expand(x)))</c>, D → F → D.</summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    private readonly Linear expand;
    private readonly Linear project;
    private readonly FeedForwardActivation _activation;

    /// <summary>Creates the network.</summary>
    public FeedForward(int width, int innerWidth, FeedForwardActivation activation) : base(nameof(FeedForward))
    {
        expand = nn.Linear(width, innerWidth);
        project = nn.Linear(innerWidth, width);
        _activation = activation;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        return project.call(Activations.Apply(expand.call(x), _activation));
    }
}
