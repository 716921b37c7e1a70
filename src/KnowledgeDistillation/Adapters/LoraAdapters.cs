using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Adapters;

/// <summary>The LoRA adapters <see cref="Lora.Apply"/> added to one model, and what can be done with them together.</summary>
public sealed class LoraAdapters
{
    private readonly nn.Module _model;

    internal LoraAdapters(nn.Module model, LoraOptions options, IReadOnlyList<LoraLayer> layers)
    {
        _model = model;
        Options = options;
        Layers = layers;
    }

    /// <summary>The options they were made with.</summary>
    public LoraOptions Options { get; }

    /// <summary>The adapted layers, in the model's order.</summary>
    public IReadOnlyList<LoraLayer> Layers { get; }

    /// <summary>Whether every adapter is merged into its layer's weight.</summary>
    public bool IsMerged => Layers.All(l => l.IsMerged);

    /// <summary>Elements of all adapters' A and B: what trains.</summary>
    public long TrainableParameters => Layers.Sum(l => l.A.weight!.numel() + l.B.weight!.numel());

    /// <summary>Merges every adapter (<see cref="LoraLayer.Merge"/>).</summary>
    /// <exception cref="InvalidOperationException">An adapter is already merged (none is changed).</exception>
    public void Merge()
    {
        if (Layers.FirstOrDefault(l => l.IsMerged) is { } merged) throw new InvalidOperationException($"The LoRA adapter of {merged.Name} is already merged; merging again would add its update twice.");
        foreach (LoraLayer layer in Layers) layer.Merge();
    }

    /// <summary>Unmerges every adapter (<see cref="LoraLayer.Unmerge"/>).</summary>
    /// <exception cref="InvalidOperationException">An adapter is not merged (none is changed).</exception>
    public void Unmerge()
    {
        if (Layers.FirstOrDefault(l => !l.IsMerged) is { } unmerged) throw new InvalidOperationException($"The LoRA adapter of {unmerged.Name} is not merged; there is nothing to unmerge.");
        foreach (LoraLayer layer in Layers) layer.Unmerge();
    }

    /// <summary>
    /// Runs <paramref name="forward"/> once and tells whether every adapter took part: false when the model's own
    /// code calls an adapted layer's <c>forward</c> directly, which skips the hooks (use <c>call</c>).
    /// </summary>
    public bool Applied(Action forward)
    {
        ArgumentNullException.ThrowIfNull(forward);
        var seen = new HashSet<string>();
        var removers = Layers.Select(l =>
        {
            var hook = l.Target.register_forward_hook((_, _, output) =>
            {
                seen.Add(l.Name);
                return output;
            });
            return (Action)hook.remove;
        }).ToList();
        try
        {
            using var noGrad = no_grad();
            forward();
        }
        finally
        {
            foreach (Action remove in removers) remove();
        }
        return seen.Count == Layers.Count;
    }
}
