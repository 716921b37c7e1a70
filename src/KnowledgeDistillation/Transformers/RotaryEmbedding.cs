using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// Rotary position embeddings (Su et al., 2021) in the layout Hugging Face uses for Llama-family checkpoints: the
/// head's features are split in two halves, and feature i of the first half rotates with feature i of the second by
/// the angle <c>position · θ^(−2i/d)</c>. Angles are computed in float32 from the positions, never learned or stored.
/// </summary>
internal static class RotaryEmbedding
{
    /// <summary>cos and sin, each <c>[S, d]</c> (the d/2 frequencies repeated twice), for positions <c>offset … offset + S − 1</c>.</summary>
    public static (Tensor Cos, Tensor Sin) Angles(long length, int headWidth, double theta, Device device, ScalarType dtype, long offset = 0)
    {
        using var scope = NewDisposeScope();
        (Tensor cos, Tensor sin) = Angles(arange(offset, offset + length, dtype: ScalarType.Int64, device: device), headWidth, theta, dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>cos and sin for explicit positions: <c>[S]</c> gives <c>[S, d]</c>; <c>[B, S]</c> gives <c>[B, 1, S, d]</c> (one row of positions per sequence, broadcast over heads).</summary>
    public static (Tensor Cos, Tensor Sin) Angles(Tensor positions, int headWidth, double theta, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        Tensor exponents = arange(0, headWidth, 2, dtype: ScalarType.Int64, device: positions.device).to(ScalarType.Float32).div(headWidth);
        Tensor inverseFrequency = full_like(exponents, theta).pow(exponents).reciprocal();
        Tensor frequencies = positions.to(ScalarType.Float32).unsqueeze(-1) * inverseFrequency;
        Tensor angles = cat([frequencies, frequencies], -1);
        if (positions.dim() == 2) angles = angles.unsqueeze(1);
        Tensor cos = angles.cos().to(dtype), sin = angles.sin().to(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>Rotates <c>[B, H, S, d]</c> by the angles: <c>x·cos + rotate_half(x)·sin</c>, with rotate_half(x) = (−x₂, x₁).</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        Tensor rotated = cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
        return x * cos + rotated * sin;
    }
}
