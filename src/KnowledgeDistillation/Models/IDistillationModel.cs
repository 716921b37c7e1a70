using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>
/// A teacher or student as distillation sees it: a forward pass that returns a <see cref="ModelOutput"/>, and what
/// such an output can hold. Models that are TorchSharp modules implement <see cref="IModuleModel{TInput}"/> as well
/// (a student must: it is trained); teachers that are not modules — a teacher cache, an ONNX Runtime session,
/// precomputed logits — implement this contract alone, and <see cref="IDevicePlacement"/> when they need to know
/// the trainer's device. Create one with <see cref="DistillationModel"/>; the reference transformers implement it directly.
/// </summary>
/// <typeparam name="TInput">What one forward pass consumes: a tensor, a <see cref="TokenBatch"/>, or any batch type.</typeparam>
public interface IDistillationModel<in TInput>
{
    /// <summary>
    /// What this model's outputs can hold. The trainer checks the objective's needs against it when it is constructed,
    /// so a term that needs something a model cannot give fails before training, not at step 1. The default is logits
    /// only: a model that returns hidden states, attention maps or queries, keys and values says so here.
    /// </summary>
    ModelOutputKinds Provides => ModelOutputKinds.Logits;

    /// <summary>Runs the model on <paramref name="input"/>, returning what <paramref name="request"/> asks for.</summary>
    /// <exception cref="NotSupportedException">The model cannot provide something the request asks for.</exception>
    ModelOutput Run(TInput input, OutputRequest request);
}

/// <summary>
/// A model backed by a TorchSharp module: the trainer moves the module to its device, switches it between train and
/// eval, and trains (student) or freezes (teacher) its parameters.
/// </summary>
/// <typeparam name="TInput">What one forward pass consumes.</typeparam>
public interface IModuleModel<in TInput> : IDistillationModel<TInput>
{
    /// <summary>The underlying module.</summary>
    nn.Module Module { get; }
}

/// <summary>A model that is not a module but must know where the trainer runs, e.g. to put its outputs there.</summary>
public interface IDevicePlacement
{
    /// <summary>Called once by the trainer with its device, before any forward pass.</summary>
    void PlaceOn(Device device);
}

/// <summary>What a model's <see cref="ModelOutput"/> can hold.</summary>
[Flags]
public enum ModelOutputKinds
{
    /// <summary>Nothing.</summary>
    None = 0,

    /// <summary>Full logits (<see cref="ModelOutput.Logits"/>).</summary>
    Logits = 1,

    /// <summary>Per-layer hidden states.</summary>
    HiddenStates = 2,

    /// <summary>Per-layer pre-softmax attention scores.</summary>
    AttentionScores = 4,

    /// <summary>Per-layer attention probabilities.</summary>
    AttentionProbabilities = 8,

    /// <summary>Both kinds of attention map.</summary>
    Attention = AttentionScores | AttentionProbabilities,

    /// <summary>Sparse top-k soft targets instead of logits (<see cref="ModelOutput.TopK"/>), as a teacher cache serves them.</summary>
    TopKTargets = 16,

    /// <summary>Per-layer self-attention queries, keys and values (<see cref="ModelOutput.QueryKeyValues"/>).</summary>
    QueryKeyValues = 32,
}

/// <summary>Helpers over <see cref="OutputRequest"/> and <see cref="ModelOutputKinds"/>.</summary>
internal static class ModelOutputKindsExtensions
{
    /// <summary>What a request needs beyond logits, as kinds.</summary>
    public static ModelOutputKinds Needs(this OutputRequest request) =>
        (request.HiddenStates ? ModelOutputKinds.HiddenStates : 0)
        | (request.AttentionScores ? ModelOutputKinds.AttentionScores : 0)
        | (request.AttentionProbabilities ? ModelOutputKinds.AttentionProbabilities : 0)
        | (request.QueryKeyValues ? ModelOutputKinds.QueryKeyValues : 0);
}
