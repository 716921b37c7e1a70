using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Adapters;

/// <summary>
/// One <c>Linear</c> with a LoRA adapter: its <c>lora_A</c> [r, in] and <c>lora_B</c> [out, r] are registered on
/// the layer itself (so they move, save and train with the model), and a forward hook adds (α / r) · B A dropout(x)
/// to the layer's output while the adapter is not merged. A starts as PyTorch's default <c>Linear</c> initialisation
/// (Kaiming-uniform, a = √5) and B at zero, as PEFT does, so a freshly adapted model computes what it did before.
/// </summary>
public sealed class LoraLayer
{
    internal LoraLayer(string name, Linear target, int rank, double scaling, double dropout)
    {
        Name = name;
        Target = target;
        Rank = rank;
        Scaling = scaling;
        Dropout = dropout;
        Parameter weight = target.weight!;
        A = nn.Linear(target.in_features, rank, hasBias: false, device: weight.device, dtype: weight.dtype);
        B = nn.Linear(rank, target.out_features, hasBias: false, device: weight.device, dtype: weight.dtype);
        using (no_grad()) nn.init.zeros_(B.weight!);
        target.register_module("lora_A", A);
        target.register_module("lora_B", B);
        target.register_forward_hook((module, input, output) => IsMerged ? output : output + Update(input, module.training));
    }

    /// <summary>The layer's full name in the model, e.g. <c>blocks.0.attention.qkv</c>.</summary>
    public string Name { get; }

    /// <summary>The adapted layer; its weight and bias stay frozen.</summary>
    public Linear Target { get; }

    /// <summary>A, [r, in]: <c>lora_A.weight</c>.</summary>
    public Linear A { get; }

    /// <summary>B, [out, r]: <c>lora_B.weight</c>.</summary>
    public Linear B { get; }

    /// <summary>r.</summary>
    public int Rank { get; }

    /// <summary>α / r (or α / √r).</summary>
    public double Scaling { get; }

    /// <summary>Dropout on the adapter's input while training.</summary>
    public double Dropout { get; }

    /// <summary>Whether (α / r) · B A is currently added into the layer's weight (the hook then adds nothing).</summary>
    public bool IsMerged { get; private set; }

    /// <summary>(α / r) · B A, [out, in]: what merging adds to the weight (a new tensor, no gradient).</summary>
    public Tensor Delta()
    {
        using var noGrad = no_grad();
        return B.weight!.matmul(A.weight!).mul(Scaling);
    }

    /// <summary>Adds the update into the layer's weight; the output is unchanged up to rounding, and faster to compute.</summary>
    /// <exception cref="InvalidOperationException">The adapter is already merged.</exception>
    public void Merge()
    {
        if (IsMerged) throw new InvalidOperationException($"The LoRA adapter of {Name} is already merged; merging again would add its update twice.");
        using var noGrad = no_grad();
        using Tensor delta = Delta();
        Target.weight!.add_(delta);
        IsMerged = true;
    }

    /// <summary>Subtracts the update from the layer's weight again (the base weight comes back up to rounding).</summary>
    /// <exception cref="InvalidOperationException">The adapter is not merged.</exception>
    public void Unmerge()
    {
        if (!IsMerged) throw new InvalidOperationException($"The LoRA adapter of {Name} is not merged; there is nothing to unmerge.");
        using var noGrad = no_grad();
        using Tensor delta = Delta();
        Target.weight!.sub_(delta);
        IsMerged = false;
    }

    /// <summary>The base weight plus the update when unmerged: what a merged copy of the layer holds (a new tensor).</summary>
    public Tensor MergedWeight()
    {
        using var noGrad = no_grad();
        if (IsMerged) return Target.weight!.detach().clone();
        using Tensor delta = Delta();
        return Target.weight!.detach().add(delta);
    }

    private Tensor Update(Tensor input, bool training)
    {
        Tensor x = Dropout > 0 && training ? nn.functional.dropout(input, Dropout, training: true) : input;
        return B.forward(A.forward(x)).mul(Scaling);
    }
}
