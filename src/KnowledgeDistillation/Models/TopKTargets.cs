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
