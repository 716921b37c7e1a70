using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// A teacher that does not run: its output for a batch is read from a <see cref="TeacherCache"/> by the examples'
/// indices. Over a top-k cache its output carries <see cref="ModelOutput.TopK"/> targets instead of logits, which the
/// objective's soft-target term reads (at the cache's temperature); over a values cache its output's logits are the
/// stored rows (e.g. a feature teacher's embedding), which any term reading teacher logits can use. Terms that need
/// hidden states or attention cannot use it. The trainer does not evaluate a cached teacher (its quality is reported as NaN).
/// </summary>
/// <typeparam name="TInput">The batch type.</typeparam>
public sealed class CachedTeacher<TInput> : IDistillationModel<TInput>, IDevicePlacement, ITopKTeacher
{
    private readonly Func<TInput, Tensor> _exampleIndices;
    private Device _device = CPU;

    /// <summary>Creates the teacher.</summary>
    /// <param name="cache">The cache; not owned (dispose it after training).</param>
    /// <param name="exampleIndices">The cache indices of a batch's examples, one per example, in batch order.</param>
    public CachedTeacher(TeacherCache cache, Func<TInput, Tensor> exampleIndices)
    {
        Cache = cache ?? throw new ArgumentNullException(nameof(cache));
        _exampleIndices = exampleIndices ?? throw new ArgumentNullException(nameof(exampleIndices));
    }

    /// <summary>The cache read from.</summary>
    public TeacherCache Cache { get; }

    /// <summary>The cache's temperature (1 for a values cache, whose rows are not probabilities).</summary>
    public double TopKTemperature => Cache.Temperature;

    /// <summary>Top-k targets (a top-k cache) or logits (a values cache); never hidden states or attention.</summary>
    public ModelOutputKinds Provides => Cache.Content == TeacherCacheContent.TopKProbabilities ? ModelOutputKinds.TopKTargets : ModelOutputKinds.Logits;

    /// <summary>The trainer's device, where the targets are read to (the CPU until placed).</summary>
    public void PlaceOn(Device device) => _device = device ?? throw new ArgumentNullException(nameof(device));

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The request asks for hidden states or attention maps, which a cache does not hold.</exception>
    public ModelOutput Run(TInput input, OutputRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.HiddenStates || request.AnyAttention)
        {
            throw new NotSupportedException(
                $"A cached teacher holds only its outputs ({Cache.Content}); the objective asks it for {request}. Use a running teacher for hidden-state and attention terms.");
        }
        if (Cache.Content != TeacherCacheContent.TopKProbabilities) return new ModelOutput(Cache.ReadValues(_exampleIndices(input), _device));
        // The indices are read on the host (the cache is a host file), so they may stay there; the targets go to the module's device.
        return new ModelOutput(Cache.Read(_exampleIndices(input), _device));
    }
}
