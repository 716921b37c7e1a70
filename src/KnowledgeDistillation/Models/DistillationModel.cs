using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>Turns any TorchSharp module into an <see cref="IDistillationModel{TInput}"/>.</summary>
public static class DistillationModel
{
    /// <summary>The plain case: a module from an input tensor to logits. Asking it for hidden states or attention fails clearly.</summary>
    public static IModuleModel<Tensor> FromLogits(nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return new LogitsModel(module);
    }

    /// <summary>Anything else: a module and a function that runs it on a batch and builds the <see cref="ModelOutput"/>.</summary>
    /// <param name="module">The module (moved, switched to train/eval and optimised by the caller of the adapter).</param>
    /// <param name="forward">Runs <paramref name="module"/> on a batch; must honour the request or throw <see cref="NotSupportedException"/>.</param>
    public static IModuleModel<TInput> FromDelegate<TModule, TInput>(TModule module, Func<TModule, TInput, OutputRequest, ModelOutput> forward)
        where TModule : nn.Module
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(forward);
        return new DelegateModel<TModule, TInput>(module, forward);
    }

    /// <summary>
    /// A teacher that is not a module — precomputed logits, an external runtime, a lookup — given as a function.
    /// The trainer neither moves nor freezes it: the function must return tensors on the trainer's device.
    /// </summary>
    /// <param name="forward">Builds the output of a batch; must honour the request or throw <see cref="NotSupportedException"/>.</param>
    /// <param name="provides">What its outputs can hold (default: logits only).</param>
    public static IDistillationModel<TInput> FromFunction<TInput>(Func<TInput, OutputRequest, ModelOutput> forward, ModelOutputKinds provides = ModelOutputKinds.Logits)
    {
        ArgumentNullException.ThrowIfNull(forward);
        return new FunctionModel<TInput>(forward, provides);
    }

    /// <summary>
    /// A module from an input tensor to logits whose intermediate outputs are captured by name (see
    /// <see cref="FeatureCapture"/>): the named modules' outputs become <see cref="ModelOutput.HiddenStates"/>, in
    /// the order given. The adapter owns the hooks; dispose it to remove them.
    /// </summary>
    public static CapturingModel WithCapturedHiddenStates(nn.Module<Tensor, Tensor> module, params string[] moduleNames)
    {
        ArgumentNullException.ThrowIfNull(module);
        return new CapturingModel(module, new FeatureCapture(module, moduleNames));
    }

    private sealed class LogitsModel(nn.Module<Tensor, Tensor> module) : IModuleModel<Tensor>
    {
        public nn.Module Module => module;

        public ModelOutputKinds Provides => ModelOutputKinds.Logits;

        public ModelOutput Run(Tensor input, OutputRequest request)
        {
            if (request.HiddenStates || request.AnyAttention)
            {
                throw new NotSupportedException(
                    $"{module.GetType().Name} only returns logits, but hidden states or attention were requested. Use " +
                    $"{nameof(DistillationModel)}.{nameof(WithCapturedHiddenStates)} to capture named submodules, or {nameof(FromDelegate)} to build the output yourself.");
            }
            return new ModelOutput(module.call(MatchParameterType(module, input)));
        }
    }

    /// <summary>Casts floating-point input to the module's parameter type, so a teacher cast to bfloat16 accepts float32 batches.</summary>
    internal static Tensor MatchParameterType(nn.Module module, Tensor input)
    {
        if (!input.is_floating_point()) return input;
        ScalarType? parameterType = module.parameters().Select(p => (ScalarType?)p.dtype).FirstOrDefault();
        return parameterType is ScalarType t && t != input.dtype && is_floating_point(t) ? input.to(t) : input;
    }

    private sealed class FunctionModel<TInput>(Func<TInput, OutputRequest, ModelOutput> forward, ModelOutputKinds provides) : IDistillationModel<TInput>
    {
        public ModelOutputKinds Provides => provides;

        public ModelOutput Run(TInput input, OutputRequest request) => forward(input, request);
    }

    private sealed class DelegateModel<TModule, TInput>(TModule module, Func<TModule, TInput, OutputRequest, ModelOutput> forward) : IModuleModel<TInput>
        where TModule : nn.Module
    {
        public nn.Module Module => module;

        public ModelOutput Run(TInput input, OutputRequest request) => forward(module, input, request);
    }
}

/// <summary>A logits module whose named submodules' outputs are captured as hidden states; dispose to remove the hooks.</summary>
public sealed class CapturingModel : IModuleModel<Tensor>, IDisposable
{
    private readonly nn.Module<Tensor, Tensor> _module;
    private readonly FeatureCapture _capture;

    internal CapturingModel(nn.Module<Tensor, Tensor> module, FeatureCapture capture)
    {
        _module = module;
        _capture = capture;
    }

    /// <inheritdoc />
    public nn.Module Module => _module;

    /// <inheritdoc />
    public ModelOutputKinds Provides => ModelOutputKinds.Logits | ModelOutputKinds.HiddenStates;

    /// <summary>The captured submodules, in the order of <see cref="ModelOutput.HiddenStates"/>.</summary>
    public IReadOnlyList<string> ModuleNames => _capture.ModuleNames;

    /// <inheritdoc />
    public ModelOutput Run(Tensor input, OutputRequest request)
    {
        if (request.AnyAttention)
        {
            throw new NotSupportedException("Attention maps cannot be captured from an arbitrary module; use a reference transformer or DistillationModel.FromDelegate.");
        }
        _capture.Clear();
        Tensor logits = _module.call(DistillationModel.MatchParameterType(_module, input)); // a bfloat16 teacher accepts float32 batches
        IReadOnlyList<Tensor> captured = _capture.Take();
        if (request.HiddenStates) return new ModelOutput(logits, captured);
        foreach (Tensor t in captured) t.Dispose();
        return new ModelOutput(logits);
    }

    /// <summary>Removes the hooks.</summary>
    public void Dispose() => _capture.Dispose();
}
