using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>
/// A teacher's output distribution stored sparsely, as a teacher cache holds it: for each row, the probabilities
/// of its k most probable classes at the cache's temperature, plus one "tail" bucket with the mass of all the
/// other classes together. Every row sums to 1.
/// </summary>
public sealed class TopKTargets : IDisposable
{
    /// <summary>Creates the targets; they take ownership of both tensors.</summary>
    /// <param name="probabilities">float32 <c>[..., k + 1]</c>: the k top probabilities, then the tail mass.</param>
    /// <param name="indices">int64 <c>[..., k]</c>: the class of each top probability.</param>
    /// <param name="temperature">The temperature the probabilities were computed at, softmax(z / T).</param>
    public TopKTargets(Tensor probabilities, Tensor indices, double temperature)
    {
        ArgumentNullException.ThrowIfNull(probabilities);
        ArgumentNullException.ThrowIfNull(indices);
        if (indices.dim() < 1 || probabilities.dim() != indices.dim() || !probabilities.shape[..^1].SequenceEqual(indices.shape[..^1])
            || probabilities.shape[^1] != indices.shape[^1] + 1)
        {
            throw new ArgumentException(
                $"probabilities must be [..., k + 1] and indices [..., k] with the same leading shape; got {Shapes.Describe(probabilities.shape)} and {Shapes.Describe(indices.shape)}.",
                nameof(probabilities));
        }
        if (!is_floating_point(probabilities.dtype))
        {
            throw new ArgumentException($"probabilities must be a floating-point tensor; got {probabilities.dtype}.", nameof(probabilities));
        }
        if (!is_integral(indices.dtype) || indices.dtype == ScalarType.Bool)
        {
            throw new ArgumentException($"indices must be an integer tensor of class indices; got {indices.dtype}.", nameof(indices));
        }
        if (indices.device_type == DeviceType.CPU && indices.numel() > 0 && indices.min().item<long>() < 0)
        {
            throw new ArgumentException($"indices must be class indices, 0 or more; found {indices.min().item<long>()}.", nameof(indices));
        }
        Probabilities = probabilities;
        Indices = indices;
        Temperature = Temperatures.Require(temperature, nameof(temperature));
    }

    /// <summary>
    /// The targets of <paramref name="logits"/> as a teacher cache stores them: softmax(z / T) in float32 over the last
    /// dimension, its <paramref name="k"/> largest probabilities and their classes, and the mass of all other classes
    /// (exactly 0 when every class is kept). A teacher cache and a teacher server both compute their rows here, so a
    /// student reads the same targets from either.
    /// </summary>
    /// <param name="logits">Floating-point logits <c>[..., C]</c>.</param>
    /// <param name="k">Classes kept per row, 1 … C.</param>
    /// <param name="temperature">T of softmax(z / T).</param>
    /// <exception cref="ArgumentException">The logits are not floating point with at least one class, or k is outside 1 … C.</exception>
    public static TopKTargets FromLogits(Tensor logits, int k, double temperature)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (!logits.is_floating_point() || logits.dim() < 1 || logits.shape[^1] < 1)
        {
            throw new ArgumentException($"logits must be floating-point [..., C] with C ≥ 1; got {logits.dtype} {Shapes.Describe(logits.shape)}.", nameof(logits));
        }
        long classes = logits.shape[^1];
        if (k < 1 || k > classes) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be 1 … {classes} (the logits' class count).");
        Temperatures.Require(temperature, nameof(temperature));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        Tensor probabilities = (logits.detach().to(ScalarType.Float32) / temperature).softmax(-1);
        (Tensor top, Tensor indices) = probabilities.topk(k, dim: -1);
        // Rounding would leave ~1e-8 in the tail when every class is kept; it is exactly 0 then.
        Tensor tail = k == classes ? zeros_like(top.narrow(-1, 0, 1)) : (probabilities.sum(-1, keepdim: true) - top.sum(-1, keepdim: true)).clamp_min(0);
        return new TopKTargets(cat([top, tail], -1).MoveToOuterDisposeScope(), indices.MoveToOuterDisposeScope(), temperature);
    }

    /// <summary>float32 <c>[..., k + 1]</c>: the k top probabilities, then the tail mass.</summary>
    public Tensor Probabilities { get; }

    /// <summary>int64 <c>[..., k]</c>: the class of each top probability.</summary>
    public Tensor Indices { get; }

    /// <summary>The temperature the probabilities were computed at.</summary>
    public double Temperature { get; }

    /// <summary>k, the number of classes stored per row.</summary>
    public int K => (int)Indices.shape[^1];

    internal IEnumerable<Tensor> Tensors => [Probabilities, Indices];

    /// <summary>Disposes both tensors.</summary>
    public void Dispose()
    {
        Probabilities.Dispose();
        Indices.Dispose();
    }
}
