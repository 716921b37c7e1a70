using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>
/// A teacher or student as distillation sees it: the module (to move between devices, switch between train and
/// eval, and take parameters from) and a forward pass that returns a <see cref="ModelOutput"/>.
/// Create one with <see cref="DistillationModel"/>; the reference transformers implement it directly.
/// </summary>
/// <typeparam name="TInput">What one forward pass consumes: a tensor, a <see cref="TokenBatch"/>, or any batch type.</typeparam>
public interface IDistillationModel<in TInput>
{
    /// <summary>The underlying module.</summary>
    nn.Module Module { get; }

    /// <summary>Runs the model on <paramref name="input"/>, returning what <paramref name="request"/> asks for.</summary>
    /// <exception cref="NotSupportedException">The model cannot provide something the request asks for.</exception>
    ModelOutput Forward(TInput input, OutputRequest request);
}
