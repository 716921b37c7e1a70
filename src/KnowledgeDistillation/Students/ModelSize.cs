using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Students;

/// <summary>The size of a model's weights.</summary>
/// <param name="Parameters">Number of trainable and frozen parameter elements.</param>
/// <param name="StateElements">Elements of everything saved with the model: parameters and buffers.</param>
/// <param name="Float32Bytes">Bytes of the saved weights in float32 (4 per element), the tensor data of a safetensors or .bin file.</param>
/// <param name="BFloat16Bytes">Bytes of the saved weights in bfloat16 (2 per element).</param>
public sealed record ModelSize(long Parameters, long StateElements, long Float32Bytes, long BFloat16Bytes)
{
    /// <summary>Measures <paramref name="model"/>: each parameter counts once even if reachable by several names.</summary>
    public static ModelSize Of(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        long parameters = model.parameters().Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>().Sum(p => p.numel());
        using var scope = NewDisposeScope();
        long state = model.state_dict().Values.Sum(t => t.numel());
        return new ModelSize(parameters, state, state * 4, state * 2);
    }
}
