using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Base of the losses between the temperature-softened output distributions of a student and a teacher,
/// p^T = softmax(z / T). It owns the conventions all of them share:
/// <list type="bullet">
/// <item>logits are <c>[N, C]</c> (a row per example) or <c>[B, S, C]</c> (a row per token);</item>
/// <item>the result is the mean over kept rows — not over elements — optionally multiplied by T²;</item>
/// <item>rows are dropped by a boolean <c>mask</c> (true = keep) and/or by <c>labels</c> equal to <see cref="IgnoreIndex"/>;
/// with no row kept the loss is 0 with zero gradient;</item>
/// <item>the math runs in float32 for bfloat16/float16/float32 inputs (float64 stays float64);</item>
/// <item>the teacher is detached: no gradient reaches it even without <c>torch.no_grad()</c>;</item>
/// <item>-inf logits (masked vocabulary entries) are allowed: a class with zero probability contributes 0, never NaN;</item>
/// <item>large inputs (more than <see cref="MaxChunkElements"/> logits) are processed in row chunks whose gradient is
/// computed during the forward pass, so the step holds one <c>[rows, C]</c> gradient instead of every intermediate
/// softmax of the whole batch (see docs/performance.md).</item>
/// <item>the module holds no per-call state: a caller with a schedule passes the step's temperature (and mixture
/// weight) to <see cref="forward(Tensor, Tensor, Tensor?, Tensor?, double, double?)"/>, so one loss serves several
/// threads or trainers at once.</item>
/// </list>
/// </summary>
public abstract class LogitDistillationLoss : nn.Module<Tensor, Tensor, Tensor>
{

    /// <summary>Creates the loss.</summary>
    /// <param name="name">Module name.</param>
    /// <param name="temperature">T in softmax(z / T); finite and &gt; 0.</param>
    /// <param name="scaleByTemperatureSquared">Multiply the loss by T² (Hinton et al. 2015) so gradient magnitudes stay comparable across temperatures.</param>
    /// <param name="ignoreIndex">The label value that marks a row to drop when labels are passed.</param>
    protected LogitDistillationLoss(string name, double temperature, bool scaleByTemperatureSquared, long ignoreIndex)
        : base(name)
    {
        Temperature = Temperatures.Require(temperature, nameof(temperature));
        ScaleByTemperatureSquared = scaleByTemperatureSquared;
        IgnoreIndex = ignoreIndex;
    }

    /// <summary>T in softmax(z / T) when a call does not give its own (a schedule passes each step's to <see cref="forward(Tensor, Tensor, Tensor?, Tensor?, double, double?)"/>).</summary>
    public double Temperature { get; }

    /// <summary>
    /// Inputs with more logits than this are processed in chunks of rows (default 4,194,304 = 16 MB of float32 per
    /// chunk). Smaller inputs take the direct path. Must be at least 1; <see cref="long.MaxValue"/> turns chunking off.
    /// </summary>
    public long MaxChunkElements
    {
        get => _maxChunkElements;
        set => _maxChunkElements = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(MaxChunkElements), value, $"MaxChunkElements must be at least 1; got {value}.");
    }

    private long _maxChunkElements = 1L << 22;

    /// <summary>Whether the loss is multiplied by T².</summary>
    public bool ScaleByTemperatureSquared { get; set; }

    /// <summary>
    /// Standardise each row of both models' logits before the temperature (<see cref="LogitStandardization"/>, Sun et
    /// al. 2024): softmax((z − mean z) / ((std z + ε) · T)). Off by default. Rows must then be finite (no −inf logits).
    /// </summary>
    public bool StandardizeLogits { get; set; }

    /// <summary>How per-row divergences become the loss (default: mean over kept rows).</summary>
    public RowReduction Reduction
    {
        get => _reduction;
        set => _reduction = Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(Reduction), value, $"Reduction must be Mean, Sum or BatchMean; got {value}.");
    }

    private RowReduction _reduction = RowReduction.Mean;

    /// <summary>Rows whose label equals this value are dropped (as cross-entropy's ignore_index).</summary>
    public long IgnoreIndex { get; }

    /// <summary>The loss over all rows.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>.</param>
    /// <param name="teacherLogits">Teacher logits of the same shape (detached inside).</param>
    public override Tensor forward(Tensor studentLogits, Tensor teacherLogits) => forward(studentLogits, teacherLogits, null, null);

    /// <summary>The loss over the kept rows, at <see cref="Temperature"/>.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>.</param>
    /// <param name="teacherLogits">Teacher logits of the same shape (detached inside).</param>
    /// <param name="mask">Optional rows to keep: bool (or 0/1 integer) of shape <c>[N]</c> or <c>[B, S]</c>.</param>
    /// <param name="labels">Optional integer labels of shape <c>[N]</c> or <c>[B, S]</c>; rows equal to <see cref="IgnoreIndex"/> are dropped.</param>
    public Tensor forward(Tensor studentLogits, Tensor teacherLogits, Tensor? mask, Tensor? labels = null) =>
        forward(studentLogits, teacherLogits, mask, labels, Temperature, null);

    /// <summary>The loss over the kept rows at a temperature (and, for losses with one, a mixture weight) given for this call only.</summary>
    /// <param name="studentLogits">Student logits, <c>[N, C]</c> or <c>[B, S, C]</c>.</param>
    /// <param name="teacherLogits">Teacher logits of the same shape (detached inside).</param>
    /// <param name="mask">Optional rows to keep: bool (or 0/1 integer) of shape <c>[N]</c> or <c>[B, S]</c>.</param>
    /// <param name="labels">Optional integer labels of shape <c>[N]</c> or <c>[B, S]</c>; rows equal to <see cref="IgnoreIndex"/> are dropped.</param>
    /// <param name="temperature">T for this call; finite and &gt; 0.</param>
    /// <param name="mixture">The mixture weight for this call (<see cref="SkewKLLoss"/>'s α, <see cref="GeneralizedJensenShannonLoss"/>'s β); null takes the loss's own.</param>
    public Tensor forward(Tensor studentLogits, Tensor teacherLogits, Tensor? mask, Tensor? labels, double temperature, double? mixture = null)
    {
        ArgumentNullException.ThrowIfNull(studentLogits);
        ArgumentNullException.ThrowIfNull(teacherLogits);
        Temperatures.Require(temperature, nameof(temperature));
        double mix = CheckMixture(mixture);
        const string layout = "logits of shape [N, C] (one row per example) or [B, S, C] (one row per token)";
        LossInputs.RequireFloating(studentLogits, nameof(studentLogits));
        LossInputs.RequireFloating(teacherLogits, nameof(teacherLogits));
        LossInputs.RequireRank(studentLogits, nameof(studentLogits), 2, 3, layout);
        LossInputs.RequireSameShape(studentLogits, nameof(studentLogits), teacherLogits, nameof(teacherLogits), "vocabulary size");
        LossInputs.RequireSameDevice(studentLogits, nameof(studentLogits), teacherLogits, nameof(teacherLogits));
        if (RequiresLabels && labels is null)
        {
            throw new ArgumentNullException(nameof(labels), $"{GetType().Name} needs labels: it splits each row at its true class.");
        }

        using var scope = NewDisposeScope();
        ScalarType type = LossInputs.ComputeType(studentLogits);
        Tensor? keep = RowMask.Resolve(studentLogits.shape[..^1], studentLogits.device, mask, labels, IgnoreIndex);
        double t = temperature;
        long classes = studentLogits.shape[^1];
        Tensor? rowLabels = RequiresLabels ? RowLabels(labels!, keep!, classes, studentLogits.device) : null;
        if (studentLogits.numel() > MaxChunkElements && classes > 0)
        {
            return Chunked(studentLogits.reshape(-1, classes), teacherLogits.detach().reshape(-1, classes), keep?.reshape(-1), rowLabels?.reshape(-1), type, t, mix, studentLogits.shape[0]).MoveToOuterDisposeScope();
        }

        Tensor? zeroing = RowMask.ForZeroing(keep);
        Tensor studentLogProbs = SoftenedLogProbabilities(RowMask.ZeroDropped(studentLogits.to(type), zeroing, 1), t);
        Tensor teacherLogProbs = SoftenedLogProbabilities(RowMask.ZeroDropped(teacherLogits.detach().to(type), zeroing, 1), t);
        Tensor loss = RowMask.Reduce(RowDivergence(studentLogProbs, teacherLogProbs, new RowArguments(rowLabels, mix)), keep, Reduction);
        if (ScaleByTemperatureSquared) loss = loss * (t * t);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>What a row's divergence may read besides the two log-probabilities.</summary>
    /// <param name="Labels">Each row's true class (0 on dropped rows), <c>[rows]</c> int64, for losses that <see cref="RequiresLabels"/>; null otherwise.</param>
    /// <param name="Mixture">The mixture weight of this call, for losses that have one (NaN otherwise).</param>
    protected readonly record struct RowArguments(Tensor? Labels, double Mixture);

    /// <summary>Whether the divergence splits rows at their true class (DKD): then labels are required and checked against the class count.</summary>
    protected virtual bool RequiresLabels => false;

    /// <summary>The loss's own mixture weight (NaN for losses without one); a call's <c>mixture</c> replaces it.</summary>
    protected virtual double DefaultMixture => double.NaN;

    /// <summary>Whether a mixture weight of exactly 1 is allowed (the range is [0, 1], else [0, 1)).</summary>
    protected virtual bool MixtureMayBeOne => true;

    private double CheckMixture(double? mixture)
    {
        if (mixture is not { } value) return DefaultMixture;
        if (double.IsNaN(DefaultMixture)) throw new ArgumentException($"{GetType().Name} has no mixture weight; pass null.", nameof(mixture));
        return RequireMixture(value, nameof(mixture), MixtureMayBeOne);
    }

    /// <summary>Returns a mixture weight in [0, 1] (or [0, 1) without <paramref name="oneAllowed"/>); NaN never passes.</summary>
    /// <exception cref="ArgumentOutOfRangeException">It lies outside; the message names <paramref name="name"/> and the value.</exception>
    protected static double RequireMixture(double value, string name, bool oneAllowed) =>
        value >= 0 && (value < 1 || (oneAllowed && value == 1)) ? value
            : throw new ArgumentOutOfRangeException(name, value, $"{name} must lie in [0, 1{(oneAllowed ? "]" : ")")}; got {value}.");

    private Tensor RowLabels(Tensor labels, Tensor keep, long classes, Device device)
    {
        if (labels.device_type == DeviceType.CPU) LossInputs.RequireLabelsInRange(labels, keep, classes, IgnoreIndex);
        return where(keep, labels.to(ScalarType.Int64, device), zeros(1, dtype: ScalarType.Int64, device: device));
    }

    /// <summary>
    /// The same loss, computed chunk by chunk over rows. Each chunk's divergence is differentiated at once with respect
    /// to that chunk of student logits (a local graph, freed before the next chunk), and the chunk gradients are
    /// written into one <c>[rows, C]</c> tensor g. The result is value + (g · s − stop_gradient(g · s)): it equals the
    /// loss exactly (x − x = 0), and autograd sees a function whose gradient with respect to s is g — the true
    /// gradient — while holding only g, never the softmaxes of the whole input.
    /// </summary>
    private Tensor Chunked(Tensor student, Tensor teacher, Tensor? keep, Tensor? rowLabels, ScalarType type, double t, double mix, long firstDimension)
    {
        long rows = student.shape[0], classes = student.shape[1];
        long chunkRows = Math.Max(1, MaxChunkElements / classes);
        bool needsGradient = student.requires_grad && is_grad_enabled();
        Tensor scale = Reduction switch
        {
            RowReduction.Sum => ones(1, type, student.device).squeeze(),
            RowReduction.BatchMean => tensor(1.0 / Math.Max(1, firstDimension), type, student.device),
            _ => (keep is null ? tensor((double)Math.Max(1, rows), type, student.device) : keep.sum().to(type).clamp_min(1)).reciprocal(),
        };
        if (ScaleByTemperatureSquared) scale = scale * (t * t);

        Tensor? zeroing = RowMask.ForZeroing(keep);
        Tensor total = zeros(1, type, student.device);
        Tensor? gradient = needsGradient ? empty(rows, classes, type, student.device) : null;
        for (long start = 0; start < rows; start += chunkRows)
        {
            using var chunkScope = NewDisposeScope();
            var range = TensorIndex.Slice(start, Math.Min(rows, start + chunkRows));
            Tensor? keepChunk = keep?[range], zeroingChunk = zeroing?[range];
            Tensor leaf = student[range].detach().to(type).requires_grad_(needsGradient);
            using (enable_grad(needsGradient))
            {
                Tensor studentLogProbs = SoftenedLogProbabilities(RowMask.ZeroDropped(leaf, zeroingChunk, 1), t);
                Tensor teacherLogProbs = SoftenedLogProbabilities(RowMask.ZeroDropped(teacher[range].to(type), zeroingChunk, 1), t);
                Tensor perRow = RowDivergence(studentLogProbs, teacherLogProbs, new RowArguments(rowLabels?[range], mix));
                Tensor sum = (keepChunk is null ? perRow : where(keepChunk, perRow, zeros(1, type, perRow.device))).sum() * scale;
                if (gradient is not null) gradient[range].copy_(autograd.grad([sum], [leaf])[0]);
                total.add_(sum.detach());
            }
        }
        Tensor value = total.squeeze();
        if (gradient is null) return value;
        // The gradient is 0 on dropped rows and on -inf logits (zero-probability classes); zeroing the dropped rows and clamping
        // -inf to the lowest finite value keeps 0 · s from being NaN when a dropped row holds NaN or ±inf.
        double lowest = finfo(student.dtype).min;
        // One [rows, C] copy at most (this path exists to save memory): where() already makes a fresh tensor, so clamp it in place.
        Tensor kept = zeroing is null ? student.clamp_min(lowest) : RowMask.ZeroDropped(student, zeroing, 1).clamp_min_(lowest);
        Tensor surrogate = gradient.to(student.dtype).flatten().dot(kept.flatten()).to(type);
        return value + (surrogate - surrogate.detach());
    }

    /// <summary>The divergence of each row, summed over the class dimension: <c>[..., C]</c> log-probabilities in, <c>[...]</c> out.</summary>
    /// <param name="studentLogProbs">log p_student^T; entries of zero probability hold the dtype's lowest finite value, not -inf.</param>
    /// <param name="teacherLogProbs">log p_teacher^T, likewise.</param>
    /// <param name="arguments">The rows' labels and the call's mixture weight, for the losses that read them.</param>
    protected abstract Tensor RowDivergence(Tensor studentLogProbs, Tensor teacherLogProbs, RowArguments arguments);

    /// <summary>Σ_c p_c (log p_c − log q_c) over the last dimension; a class with p_c = 0 contributes exactly 0.</summary>
    protected static Tensor KullbackLeibler(Tensor logP, Tensor logQ) => logP.exp().mul(logP - logQ).sum(-1);

    /// <summary>
    /// log softmax(z / T) (of the standardised logits when <see cref="StandardizeLogits"/>), with -inf (a class of zero
    /// probability) replaced by the lowest finite value so that p · (log p − log q) evaluates to 0 · finite = 0 there
    /// instead of 0 · ∞ = NaN, in value and in gradient.
    /// </summary>
    private Tensor SoftenedLogProbabilities(Tensor logits, double temperature)
    {
        if (StandardizeLogits) logits = LogitStandardization.Apply(logits);
        Tensor scaled = temperature == 1.0 ? logits : logits / temperature;
        Tensor logProbs = scaled.log_softmax(-1);
        double lowest = finfo(logits.dtype).min;
        // In place where no gradient flows (the teacher, or any call under no_grad): log_softmax's backward reads its output.
        return logProbs.requires_grad ? logProbs.clamp_min(lowest) : logProbs.clamp_min_(lowest);
    }
}
