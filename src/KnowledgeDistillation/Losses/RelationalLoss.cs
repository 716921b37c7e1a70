using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Base of the losses that compare how a batch's examples relate to each other rather than the examples themselves
/// (RKD, PKT, similarity-preserving KD): each model's features <c>[N, ...]</c> are flattened to one vector per
/// example, <c>[N, D]</c>, and the student's and the teacher's widths may differ because only relations between rows
/// are compared. These are batch-level losses: their value for a batch is not a mean of per-example values, and they
/// need at least two examples. An optional mask <c>[N]</c> drops examples from every relation (a dropped row takes
/// part in no pair); with fewer than two kept rows (an empty batch too) the loss is 0 with zero gradient. The teacher is
/// detached and the math runs in float32 for half-precision inputs. All three are unchanged when either model's
/// features are multiplied by a positive number, so each side is first divided by its largest magnitude (a constant):
/// features near 10³⁰ would otherwise overflow float32 squares to infinity and make the loss NaN.
/// </summary>
public abstract class RelationalLoss : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Creates the loss.</summary>
    protected RelationalLoss(string name) : base(name)
    {
    }

    /// <summary>The loss over every example.</summary>
    /// <param name="studentFeatures">Student features, <c>[N, ...]</c> (a vector, a sequence or a feature map per example).</param>
    /// <param name="teacherFeatures">Teacher features, <c>[N, ...]</c>, any width (detached inside).</param>
    public override Tensor forward(Tensor studentFeatures, Tensor teacherFeatures) => forward(studentFeatures, teacherFeatures, null);

    /// <summary>The loss over the examples the mask keeps.</summary>
    /// <param name="studentFeatures">Student features, <c>[N, ...]</c>.</param>
    /// <param name="teacherFeatures">Teacher features, <c>[N, ...]</c> (detached inside).</param>
    /// <param name="mask">Optional examples to keep: bool (or 0/1 integer) of shape <c>[N]</c>.</param>
    public Tensor forward(Tensor studentFeatures, Tensor teacherFeatures, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(studentFeatures);
        ArgumentNullException.ThrowIfNull(teacherFeatures);
        LossInputs.RequireFloating(studentFeatures, nameof(studentFeatures));
        LossInputs.RequireFloating(teacherFeatures, nameof(teacherFeatures));
        LossInputs.RequireRank(studentFeatures, nameof(studentFeatures), 2, 8, "features of shape [N, ...], one entry per example");
        LossInputs.RequireRank(teacherFeatures, nameof(teacherFeatures), 2, 8, "features of shape [N, ...], one entry per example");
        if (studentFeatures.shape[0] != teacherFeatures.shape[0])
        {
            throw new ArgumentException(
                $"studentFeatures and teacherFeatures must hold the same examples; got {studentFeatures.shape[0]} and {teacherFeatures.shape[0]} ({Shapes.Describe(studentFeatures.shape)} vs {Shapes.Describe(teacherFeatures.shape)}).",
                nameof(teacherFeatures));
        }
        LossInputs.RequireSameDevice(studentFeatures, nameof(studentFeatures), teacherFeatures, nameof(teacherFeatures));

        using var scope = NewDisposeScope();
        ScalarType type = LossInputs.ComputeType(studentFeatures);
        long examples = studentFeatures.shape[0];
        Tensor? keep = RowMask.Resolve([examples], studentFeatures.device, mask, null, Labels.IgnoreIndex);
        if (examples == 0) return (studentFeatures.to(type).sum() * 0).MoveToOuterDisposeScope(); // nothing to relate: 0, still on the graph
        Tensor weight = keep is null ? ones(examples, type, studentFeatures.device) : keep.to(type);
        Tensor student = RowMask.ZeroDropped(Rescaled(studentFeatures.to(type).reshape(examples, Width(studentFeatures))), keep, 1);
        Tensor teacher = RowMask.ZeroDropped(Rescaled(teacherFeatures.detach().to(type).reshape(examples, Width(teacherFeatures))), keep, 1);
        Tensor loss = Relation(student, teacher, weight);
        // Fewer than two kept examples relate nothing: 0 with zero gradient.
        return where(weight.sum().ge(2), loss, zeros_like(loss)).MoveToOuterDisposeScope();
    }

    private static long Width(Tensor features) => features.shape[1..].Aggregate(1L, (a, b) => a * b);

    /// <summary>Divided by the largest finite magnitude (a constant, so the gradient is the loss's own: the loss is scale-invariant).</summary>
    private static Tensor Rescaled(Tensor features)
    {
        if (features.numel() == 0) return features;
        Tensor magnitude = features.detach().abs().nan_to_num(0, 0, 0).max().clamp_min(1e-30);
        return features / magnitude;
    }

    /// <summary>The loss from flattened features <c>[N, Ds]</c> and <c>[N, Dt]</c> and 0/1 example weights <c>[N]</c> (dropped rows hold zeros).</summary>
    protected abstract Tensor Relation(Tensor student, Tensor teacher, Tensor weight);

    /// <summary>Smooth L1 (Huber with δ = 1) elementwise: ½x² for |x| &lt; 1, |x| − ½ otherwise, as PyTorch's <c>smooth_l1_loss</c>.</summary>
    protected static Tensor SmoothL1(Tensor difference)
    {
        Tensor absolute = difference.abs();
        return where(absolute.lt(1), 0.5 * difference.square(), absolute - 0.5);
    }
}
