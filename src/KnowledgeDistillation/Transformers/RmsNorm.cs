using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// Root-mean-square layer norm (Zhang and Sennrich, 2019): <c>weight · x / √(mean(x²) + ε)</c> over the last dimension,
/// computed in float32 whatever the input's dtype and cast back before the weight is applied, as Llama does.
/// </summary>
/// <remarks>Parameter: <c>weight</c> (initialised to 1).</remarks>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _epsilon;

    /// <summary>Creates the norm over <paramref name="width"/> features.</summary>
    public RmsNorm(int width, double epsilon) : base(nameof(RmsNorm))
    {
        weight = nn.Parameter(ones(width));
        _epsilon = epsilon;
        RegisterComponents();
    }

    /// <summary>ε added to the mean square.</summary>
    public double Epsilon => _epsilon;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor wide = x.to(ScalarType.Float32);
        Tensor normalized = wide * wide.pow(2).mean([-1], keepdim: true).add(_epsilon).rsqrt();
        return (weight * normalized.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
