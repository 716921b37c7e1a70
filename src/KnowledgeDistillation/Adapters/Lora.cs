using System.Runtime.CompilerServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Adapters;

/// <summary>
/// Adds LoRA adapters to a model's <c>Linear</c> layers and freezes everything else. The adapters act through forward
/// hooks, which TorchSharp runs when a layer is invoked with <c>call</c>: the reference models invoke their
/// projections that way; a custom module whose own code calls a <c>Linear</c>'s <c>forward</c> directly bypasses them
/// (<see cref="LoraAdapters.Applied"/> tells).
/// </summary>
public static class Lora
{
    private static readonly ConditionalWeakTable<Linear, LoraLayer> Adapted = new();

    /// <summary>
    /// Adapts every <c>Linear</c> of <paramref name="model"/> that <see cref="LoraOptions.Targets"/> names, and freezes
    /// every other parameter of the model (only the adapters' A and B train). Everything is checked before anything
    /// changes: on an exception the model is as it was.
    /// </summary>
    /// <exception cref="ArgumentException">An option is not usable; a pattern names no <c>Linear</c> (the message lists the model's); the rank exceeds a layer's width; a layer already has an adapter.</exception>
    public static LoraAdapters Apply(nn.Module model, LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        (string Name, nn.Module Module)[] modules = model.named_modules().Select(m => (m.name, m.module)).ToArray();
        string[] linearNames = modules.Where(m => m.Module is Linear).Select(m => m.Name).ToArray();
        var matchedNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (string pattern in options.Targets)
        {
            (string Name, nn.Module Module)[] matched = modules.Where(m => Matches(m.Name, pattern)).ToArray();
            if (!matched.Any(m => m.Module is Linear))
            {
                string found = matched.Length > 0
                    ? $"it names {string.Join(", ", matched.Take(3).Select(m => $"{m.Name} ({m.Module.GetType().Name})"))}, which {(matched.Length == 1 ? "is not a Linear" : "are not Linear layers")}"
                    : "it names no module";
                throw new ArgumentException(
                    $"Targets pattern \"{pattern}\" matches no Linear layer of {model.GetType().Name}: {found}. Its Linear layers: {Describe(linearNames)}.", nameof(options));
            }
            matchedNames.UnionWith(matched.Where(m => m.Module is Linear).Select(m => m.Name));
        }
        // In the model's order, whatever the order of the patterns.
        (string Name, Linear Layer)[] chosen = modules.Where(m => m.Module is Linear && matchedNames.Contains(m.Name)).Select(m => (m.Name, (Linear)m.Module)).ToArray();
        foreach ((string name, Linear layer) in chosen)
        {
            if (Adapted.TryGetValue(layer, out _)) throw new ArgumentException($"{name} already has a LoRA adapter; apply LoRA once per layer.", nameof(model));
            long width = Math.Min(layer.in_features, layer.out_features);
            if (options.Rank > width)
            {
                throw new ArgumentException(
                    $"Rank must be at most min(in, out) of every adapted layer; {name} is {layer.in_features} → {layer.out_features}, so at most {width}; got {options.Rank}.", nameof(options));
            }
        }

        foreach (Parameter p in model.parameters()) p.requires_grad_(false);
        var layers = new List<LoraLayer>();
        foreach ((string name, Linear layer) in chosen) layers.Add(Attach(name, layer, options.Rank, options.Scaling, options.Dropout));
        return new LoraAdapters(model, options, layers);
    }

    /// <summary>The adapter of <paramref name="layer"/>, or null when it has none.</summary>
    public static LoraLayer? Of(Linear layer) => Adapted.TryGetValue(layer ?? throw new ArgumentNullException(nameof(layer)), out LoraLayer? adapter) ? adapter : null;

    /// <summary>Every adapted layer of <paramref name="model"/>, by its full name in the model.</summary>
    public static IReadOnlyDictionary<string, LoraLayer> LayersOf(nn.Module model) =>
        model.named_modules().Where(m => m.module is Linear l && Of(l) is not null).ToDictionary(m => m.name, m => Of((Linear)m.module)!, StringComparer.Ordinal);

    /// <summary>
    /// The model's state dictionary as a model without adapters would hold it: each adapted weight as
    /// W + (α / r) · B A (a new tensor unless merged), and no adapter tensors. Exports (Hugging Face folders, ONNX) use it,
    /// so an adapted model always leaves merged.
    /// </summary>
    public static Dictionary<string, Tensor> MergedStateDict(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        IReadOnlyDictionary<string, LoraLayer> adapters = LayersOf(model);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach ((string name, Tensor tensor) in model.state_dict())
        {
            if (IsAdapterTensor(name, adapters)) continue;
            result[name] = name.EndsWith(".weight", StringComparison.Ordinal) && adapters.TryGetValue(name[..^".weight".Length], out LoraLayer? adapter) && !adapter.IsMerged
                ? adapter.MergedWeight()
                : tensor;
        }
        return result;
    }

    /// <summary>Whether <paramref name="name"/> is an adapter's A or B (<c>….lora_A.weight</c> under an adapted layer).</summary>
    public static bool IsAdapterTensor(string name, IReadOnlyDictionary<string, LoraLayer> adapters)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(adapters);
        int at = name.IndexOf(".lora_", StringComparison.Ordinal);
        return at > 0 && adapters.ContainsKey(name[..at]);
    }

    /// <summary>Adds one adapter (no checks: the caller has made them); a loaded adapter may have its own rank.</summary>
    internal static LoraLayer Attach(string name, Linear layer, int rank, double scaling, double dropout)
    {
        var adapter = new LoraLayer(name, layer, rank, scaling, dropout);
        Adapted.Add(layer, adapter);
        return adapter;
    }

    /// <summary>A module name matches a pattern as PEFT's target_modules list does: equal, or ending with "." + pattern.</summary>
    internal static bool Matches(string name, string pattern) =>
        name == pattern || name.EndsWith("." + pattern, StringComparison.Ordinal);

    private static string Describe(string[] names) =>
        names.Length == 0 ? "none" : string.Join(", ", names.Take(8)) + (names.Length > 8 ? $", … ({names.Length} in all)" : "");
}
