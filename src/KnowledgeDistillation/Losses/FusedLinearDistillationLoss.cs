using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>The teacher of a <see cref="FusedLinearDistillationLoss"/> given as its last hidden states and output head, so that its logits are never held whole either.</summary>
/// <param name="Hidden">Teacher hidden states, <c>[N, D_t]</c>.</param>
/// <param name="HeadWeight">Teacher output head, <c>[V, D_t]</c>.</param>
public sealed record TeacherHead(Tensor Hidden, Tensor HeadWeight);

/// <summary>
/// A distillation loss computed from the student's last hidden states and output-head weight, chunk by chunk over the
/// rows, without ever holding the student's <c>[N, V]</c> logits (the idea of Liger-Kernel's fused linear losses): for
/// each chunk the logits <c>h·Wᵀ</c>, the divergence (any <see cref="LogitDistillationLoss"/>: forward or reverse KL,
/// JSD, TVD, skew KL, with its temperature) and the optional hard cross-entropy are computed, their gradients with
/// respect to the chunk's hidden states and the head weight taken at once, and the chunk's logits freed. The result
/// is <c>w_kd · Σ divergence + w_ce · Σ CE</c> over the rows whose label is not the ignore index, divided by their number.
/// </summary>
/// <remarks>
/// Gradients flow to <c>hidden</c> and <c>headWeight</c> (the teacher is never differentiated). Peak memory is one
/// chunk's logits and their intermediates, plus <c>[N, D]</c> and <c>[V, D]</c> gradients, instead of several
/// <c>[N, V]</c> tensors (docs/performance.md has the measurement). The divergence module given is switched to
/// <see cref="RowReduction.Sum"/>: this loss normalises itself.
/// </remarks>
public sealed class FusedLinearDistillationLoss : nn.Module
{
    private readonly LogitDistillationLoss _divergence;
    private readonly HardTargetCrossEntropyLoss? _hard;

    /// <summary>Creates the loss.</summary>
    /// <param name="divergence">The distillation divergence with its temperature (its reduction is set to Sum).</param>
    /// <param name="distillationWeight">w_kd, the divergence's weight.</param>
    /// <param name="hardWeight">w_ce, the weight of cross-entropy against the labels on the untempered student logits (0 = none).</param>
    /// <param name="chunkRows">Rows per chunk: memory grows with chunkRows × V.</param>
    /// <param name="labelSmoothing">Label smoothing of the hard term.</param>
    public FusedLinearDistillationLoss(LogitDistillationLoss divergence, double distillationWeight = 1.0, double hardWeight = 0.0, int chunkRows = 1024, double labelSmoothing = 0)
        : base(nameof(FusedLinearDistillationLoss))
    {
        ArgumentNullException.ThrowIfNull(divergence);
        if (!double.IsFinite(distillationWeight) || distillationWeight < 0) throw new ArgumentOutOfRangeException(nameof(distillationWeight), distillationWeight, $"distillationWeight must be finite and ≥ 0; got {distillationWeight}.");
        if (!double.IsFinite(hardWeight) || hardWeight < 0) throw new ArgumentOutOfRangeException(nameof(hardWeight), hardWeight, $"hardWeight must be finite and ≥ 0; got {hardWeight}.");
        if (chunkRows < 1) throw new ArgumentOutOfRangeException(nameof(chunkRows), chunkRows, $"chunkRows must be at least 1; got {chunkRows}.");
        _divergence = divergence;
        _divergence.Reduction = RowReduction.Sum;
        if (hardWeight > 0) _hard = new HardTargetCrossEntropyLoss(divergence.IgnoreIndex, labelSmoothing) { Reduction = RowReduction.Sum };
        DistillationWeight = distillationWeight;
        HardWeight = hardWeight;
        ChunkRows = chunkRows;
    }

    /// <summary>w_kd.</summary>
    public double DistillationWeight { get; }

    /// <summary>w_ce.</summary>
    public double HardWeight { get; }

    /// <summary>Rows per chunk.</summary>
    public int ChunkRows { get; }

    /// <summary>The loss for a teacher given as logits <c>[N, V]</c>.</summary>
    /// <param name="hidden">Student hidden states <c>[N, D]</c> (flatten <c>[B, S, D]</c> first).</param>
    /// <param name="headWeight">Student output head <c>[V, D]</c> (an LM head's weight, or the tied embedding matrix).</param>
    /// <param name="teacherLogits">Teacher logits <c>[N, V]</c>.</param>
    /// <param name="labels">Optional <c>[N]</c> labels: rows equal to the divergence's ignore index are dropped; required when <c>hardWeight</c> &gt; 0.</param>
    public Tensor forward(Tensor hidden, Tensor headWeight, Tensor teacherLogits, Tensor? labels = null)
    {
        ArgumentNullException.ThrowIfNull(teacherLogits);
        Validate(hidden, headWeight, labels);
        RequireShape(teacherLogits, "teacherLogits", [hidden.shape[0], headWeight.shape[0]]);
        return FusedFunction.apply(hidden, headWeight, new FusedInputs(this, (start, count) => teacherLogits.narrow(0, start, count), labels));
    }

    /// <summary>The loss for a teacher given as hidden states and head: its logits are computed chunk by chunk as well.</summary>
    public Tensor forward(Tensor hidden, Tensor headWeight, TeacherHead teacher, Tensor? labels = null)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        Validate(hidden, headWeight, labels);
        RequireShape(teacher.Hidden, "teacher.Hidden", [hidden.shape[0], -1]);
        RequireShape(teacher.HeadWeight, "teacher.HeadWeight", [headWeight.shape[0], teacher.Hidden.shape[1]]);
        return FusedFunction.apply(hidden, headWeight,
            new FusedInputs(this, (start, count) => teacher.Hidden.narrow(0, start, count).matmul(teacher.HeadWeight.t()), labels));
    }

    private void Validate(Tensor hidden, Tensor headWeight, Tensor? labels)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(headWeight);
        if (hidden.dim() != 2 || !is_floating_point(hidden)) throw new ArgumentException($"hidden must be floating-point [N, D]; got {hidden.dtype} {Shapes.Describe(hidden.shape)}.", nameof(hidden));
        RequireShape(headWeight, nameof(headWeight), [-1, hidden.shape[1]]);
        if (headWeight.dtype != hidden.dtype) throw new ArgumentException($"headWeight is {headWeight.dtype} but hidden is {hidden.dtype}; they must match.", nameof(headWeight));
        if (labels is not null) RequireShape(labels, nameof(labels), [hidden.shape[0]]);
        if (_hard is not null && labels is null) throw new ArgumentException("labels are required when hardWeight > 0.", nameof(labels));
    }

    private static void RequireShape(Tensor t, string name, long[] expected)
    {
        bool ok = t.dim() == expected.Length && expected.Select((e, i) => e < 0 || t.shape[i] == e).All(x => x);
        if (!ok)
        {
            string want = "[" + string.Join(", ", expected.Select(e => e < 0 ? "*" : e.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";
            throw new ArgumentException($"{name} must have shape {want}; got {Shapes.Describe(t.shape)}.", name);
        }
    }

    /// <summary>What the autograd function needs besides the two differentiable tensors (kept out of its tensor arguments on purpose).</summary>
    private sealed record FusedInputs(FusedLinearDistillationLoss Loss, Func<long, long, Tensor> TeacherChunk, Tensor? Labels);

    private sealed class FusedFunction : autograd.SingleTensorFunction<FusedFunction>
    {
        public override string Name => nameof(FusedLinearDistillationLoss);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var hidden = (Tensor)vars[0];
            var weight = (Tensor)vars[1];
            var inputs = (FusedInputs)vars[2];
            FusedLinearDistillationLoss loss = inputs.Loss;
            long rows = hidden.shape[0];
            Tensor gradHidden = zeros_like(hidden), gradWeight = zeros_like(weight);
            // Summed on the device: no host read per chunk.
            Tensor total = zeros(1, dtype: ScalarType.Float64, device: hidden.device);
            using (enable_grad())
            {
                Tensor weightLeaf = weight.detach().requires_grad_();
                for (long start = 0; start < rows; start += loss.ChunkRows)
                {
                    using var scope = NewDisposeScope();
                    long count = Math.Min(loss.ChunkRows, rows - start);
                    Tensor h = hidden.narrow(0, start, count).detach().requires_grad_();
                    Tensor teacher;
                    using (no_grad()) teacher = inputs.TeacherChunk(start, count).detach();
                    Tensor? labels = inputs.Labels?.narrow(0, start, count);
                    Tensor used = h;
                    if (labels is not null)
                    {
                        // Ignored rows are zeroed before the product: a NaN or infinity there would otherwise reach the
                        // head weight's gradient through 0 · NaN in the matmul's backward pass.
                        Tensor ignored = labels.eq(loss._divergence.IgnoreIndex).unsqueeze(1);
                        used = h.masked_fill(ignored, 0);
                        teacher = teacher.masked_fill(ignored, 0);
                    }
                    Tensor logits = used.matmul(weightLeaf.t());
                    Tensor chunkLoss = loss._divergence.forward(logits, teacher, null, labels) * loss.DistillationWeight;
                    if (loss._hard is not null) chunkLoss = chunkLoss + loss._hard.forward(logits, labels!, null) * loss.HardWeight;
                    IList<Tensor> grads = autograd.grad([chunkLoss], [h, weightLeaf], null, false, false, true);
                    gradHidden.narrow(0, start, count).copy_(grads[0]);
                    gradWeight.add_(grads[1]);
                    total.add_(chunkLoss.detach().to(ScalarType.Float64));
                }
                weightLeaf.Dispose();
            }
            // Mean over kept rows; with none kept every sum is 0, so dividing by max(kept, 1) gives 0.
            Tensor kept = inputs.Labels is null
                ? tensor((double)Math.Max(rows, 1), dtype: ScalarType.Float64, device: hidden.device)
                : inputs.Labels.ne(loss._divergence.IgnoreIndex).sum().to(ScalarType.Float64).clamp_min(1);
            Tensor scale = kept.reciprocal();
            gradHidden.mul_(scale.to(hidden.dtype));
            gradWeight.mul_(scale.to(weight.dtype));
            ctx.save_for_backward([gradHidden, gradWeight]);
            Tensor value = total.mul(scale).to(hidden.dtype).reshape([]);
            total.Dispose();
            kept.Dispose();
            scale.Dispose();
            return value;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            List<Tensor> saved = ctx.get_saved_variables();
            return [saved[0] * gradOutput, saved[1] * gradOutput, null!]; // one entry per argument; the third is not a tensor
        }
    }
}
