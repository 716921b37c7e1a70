namespace KnowledgeDistillation.Adapters;

/// <summary>
/// Which <c>Linear</c> layers get a LoRA adapter and its shape (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
/// Language Models"): the layer computes W x + b + (α / r) · B A dropout(x), with A of shape [r, in] and B of
/// shape [out, r]; only A and B train.
/// </summary>
public sealed class LoraOptions
{
    /// <summary>
    /// Module names, matched as PEFT's <c>target_modules</c> list is: a <c>Linear</c> is adapted when its full name
    /// equals a pattern or ends with "." + the pattern (e.g. <c>attention.qkv</c>). <see cref="LoraTargets"/> has the
    /// reference models' presets. Every pattern must match at least one <c>Linear</c>.
    /// </summary>
    public IList<string> Targets { get; set; } = [];

    /// <summary>r, the adapter's rank: 1 … min(in, out) of every adapted layer (default 8).</summary>
    public int Rank { get; set; } = 8;

    /// <summary>α: the update is scaled by α / r (or α / √r with <see cref="RankStabilized"/>); default 16.</summary>
    public double Alpha { get; set; } = 16;

    /// <summary>Dropout on the adapter's input while training, 0 ≤ p &lt; 1 (default 0).</summary>
    public double Dropout { get; set; }

    /// <summary>Scale by α / √r (rsLoRA, Kalajdzievski 2023) instead of α / r; PEFT's <c>use_rslora</c>.</summary>
    public bool RankStabilized { get; set; }

    /// <summary>The scale of the update, α / r or α / √r.</summary>
    public double Scaling => RankStabilized ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option that is not usable, its rule and its value.</summary>
    public void Validate()
    {
        if (Targets is null || Targets.Count == 0 || Targets.Any(string.IsNullOrWhiteSpace))
        {
            throw new ArgumentException($"Targets must list module names to adapt (see LoraTargets); got [{string.Join(", ", Targets ?? [])}].", nameof(Targets));
        }
        if (Rank < 1) throw new ArgumentException($"Rank must be at least 1; got {Rank}.", nameof(Rank));
        if (!(Alpha > 0) || double.IsInfinity(Alpha)) throw new ArgumentException($"Alpha must be a finite number above 0; got {Alpha}.", nameof(Alpha));
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentException($"Dropout must be 0 ≤ p < 1; got {Dropout}.", nameof(Dropout));
    }
}
