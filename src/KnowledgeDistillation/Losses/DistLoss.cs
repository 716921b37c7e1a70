using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022): match the teacher's
/// predictions up to a linear relation rather than exactly, by Pearson correlation. With Y = softmax(Z / T) as a
/// <c>[rows, C]</c> matrix for each model:
/// <list type="bullet">
/// <item>inter-class relation = 1 − mean over rows i of ρ(Y_s[i, :], Y_t[i, :]) (each example's ranking of the classes);</item>
/// <item>intra-class relation = 1 − mean over classes c of ρ(Y_s[:, c], Y_t[:, c]) (each class's ranking of the batch's examples);</item>
/// <item>loss = T² · (β · inter + γ · intra),</item>
/// </list>
/// where ρ(a, b) = (a − ā)·(b − b̄) / (‖a − ā‖ ‖b − b̄‖ + ε) with ε = 1e-8, as in the authors' code (defaults β = γ = T = 1).
/// </summary>
/// <remarks>
/// The intra-class term relates the rows of one batch to each other, so DIST is a batch-level loss: its value for a
/// batch is not the mean of per-example values, and it needs batches of several examples (one kept row gives an
/// intra-class correlation of 0, a loss of γ·T²). Dropped rows (mask false, or label equal to the ignore index) take
/// no part in either term; <c>[B, S, C]</c> logits count every kept token as a row. With no row kept the loss is 0
/// with zero gradient. Math in float32 for half-precision inputs; the teacher is detached.
/// <para>
/// Temperature (per call or the loss's own), the T² switch, standardisation, masks and the ignore index work as in
/// <see cref="LogitDistillationLoss"/>. DIST cannot take that family's reduction or chunking: its intra-class term
/// correlates each class across all kept rows of the batch at once, so there are no per-row values to reduce (mean,
/// sum or batch mean would all be the same number) and no chunk of rows whose loss could be computed on its own.
/// </para>
/// </remarks>
public sealed class DistLoss : nn.Module<Tensor, Tensor, Tensor>
{
    private const double Epsilon = 1e-8;

    /// <summary>Creates the loss with the authors' defaults.</summary>
    /// <param name="beta">β, the weight of the inter-class term; finite and ≥ 0.</param>
    /// <param name="gamma">γ, the weight of the intra-class term; finite and ≥ 0.</param>
    /// <param name="temperature">T; finite and &gt; 0.</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (default true, as the authors' code).</param>
    /// <param name="ignoreIndex">Label value marking rows to drop when labels are passed.</param>
    public DistLoss(double beta = 1.0, double gamma = 1.0, double temperature = 1.0, bool scaleByTemperatureSquared = true, long ignoreIndex = Labels.IgnoreIndex)
        : base(nameof(DistLoss))
    {
        Beta = LossInputs.RequireNonNegativeWeight(beta, nameof(beta));
        Gamma = LossInputs.RequireNonNegativeWeight(gamma, nameof(gamma));
        Temperature = Temperatures.Require(temperature, nameof(temperature));
        ScaleByTemperatureSquared = scaleByTemperatureSquared;
        IgnoreIndex = ignoreIndex;
    }

    /// <summary>β, the inter-class weight.</summary>
    public double Beta { get; }

    /// <summary>γ, the intra-class weight.</summary>
    public double Gamma { get; }

    /// <summary>T when a call does not give its own (a schedule passes each step's to <see cref="forward(Tensor, Tensor, Tensor?, Tensor?, double)"/>).</summary>
    public double Temperature { get; }

    /// <summary>Whether the loss is multiplied by T².</summary>
    public bool ScaleByTemperatureSquared { get; set; }

    /// <summary>Standardise both models' logits per row before the temperature (<see cref="LogitStandardization"/>).</summary>
    public bool StandardizeLogits { get; set; }

    /// <summary>Rows whose label equals this value are dropped.</summary>
    public long IgnoreIndex { get; }

    /// <summary>The loss over all rows.</summary>
    public override Tensor forward(Tensor studentLogits, Tensor teacherLogits) => forward(studentLogits, teacherLogits, null, null);

    /// <summary>The loss over the kept rows.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>.</param>
    /// <param name="teacherLogits">Teacher logits of the same shape (detached inside).</param>
    /// <param name="mask">Optional rows to keep, <c>[N]</c> or <c>[B, S]</c>.</param>
    /// <param name="labels">Optional labels; rows equal to <see cref="IgnoreIndex"/> are dropped.</param>
    public Tensor forward(Tensor studentLogits, Tensor teacherLogits, Tensor? mask, Tensor? labels = null) =>
        forward(studentLogits, teacherLogits, mask, labels, Temperature);

    /// <summary>The loss over the kept rows at a temperature given for this call only.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>.</param>
    /// <param name="teacherLogits">Teacher logits of the same shape (detached inside).</param>
    /// <param name="mask">Optional rows to keep, <c>[N]</c> or <c>[B, S]</c>.</param>
    /// <param name="labels">Optional labels; rows equal to <see cref="IgnoreIndex"/> are dropped.</param>
    /// <param name="temperature">T for this call; finite and &gt; 0.</param>
    public Tensor forward(Tensor studentLogits, Tensor teacherLogits, Tensor? mask, Tensor? labels, double temperature)
    {
        Temperatures.Require(temperature, nameof(temperature));
        ArgumentNullException.ThrowIfNull(studentLogits);
        ArgumentNullException.ThrowIfNull(teacherLogits);
        LossInputs.RequireFloating(studentLogits, nameof(studentLogits));
        LossInputs.RequireFloating(teacherLogits, nameof(teacherLogits));
        LossInputs.RequireRank(studentLogits, nameof(studentLogits), 2, 3, "logits of shape [N, C] or [B, S, C]");
        LossInputs.RequireSameShape(studentLogits, nameof(studentLogits), teacherLogits, nameof(teacherLogits), "class count");
        LossInputs.RequireSameDevice(studentLogits, nameof(studentLogits), teacherLogits, nameof(teacherLogits));

        using var scope = NewDisposeScope();
        ScalarType type = LossInputs.ComputeType(studentLogits);
        long classes = studentLogits.shape[^1];
        Tensor? keep = RowMask.Resolve(studentLogits.shape[..^1], studentLogits.device, mask, labels, IgnoreIndex)?.reshape(-1);
        Tensor student = Probabilities(RowMask.ZeroDropped(studentLogits.to(type).reshape(-1, classes), keep, 1), temperature);
        Tensor teacher = Probabilities(RowMask.ZeroDropped(teacherLogits.detach().to(type).reshape(-1, classes), keep, 1), temperature);
        Tensor weight = keep is null ? ones(student.shape[0], type, student.device) : keep.to(type);
        Tensor kept = weight.sum();

        // Inter-class: a correlation per row over its classes, averaged over the kept rows.
        Tensor inter = 1 - RowMask.Mean(Correlation(student, teacher, dim: 1, weight: null), keep);
        // Intra-class: a correlation per class over the kept rows (dropped rows weigh 0 in the means and the sums).
        Tensor intra = 1 - Correlation(student, teacher, dim: 0, weight: weight.unsqueeze(1)).mean();
        Tensor loss = Beta * inter + Gamma * intra;
        if (ScaleByTemperatureSquared) loss = loss * (temperature * temperature);
        // No kept row: 0 with zero gradient (not 1 − 0 from the empty correlations).
        return where(kept.gt(0), loss, zeros_like(loss)).MoveToOuterDisposeScope();
    }

    private Tensor Probabilities(Tensor logits, double temperature) => ((StandardizeLogits ? LogitStandardization.Apply(logits) : logits) / temperature).softmax(-1);

    /// <summary>ρ along <paramref name="dim"/>, with optional 0/1 weights over that dimension's entries.</summary>
    private static Tensor Correlation(Tensor a, Tensor b, long dim, Tensor? weight)
    {
        Tensor Centred(Tensor x)
        {
            if (weight is null) return x - x.mean([dim], keepdim: true);
            Tensor mean = (x * weight).sum(dim, keepdim: true) / weight.sum(dim, keepdim: true).clamp_min(1);
            return (x - mean) * weight;
        }
        Tensor ca = Centred(a), cb = Centred(b);
        // A constant vector (one kept row, or a class every row gives the same probability) has norm 0: its ρ is 0/ε = 0,
        // and the clamp keeps √0's infinite derivative out of the gradient.
        Tensor Norm(Tensor x) => x.square().sum(dim).clamp_min(1e-36).sqrt();
        return (ca * cb).sum(dim) / (Norm(ca) * Norm(cb) + Epsilon);
    }
}
