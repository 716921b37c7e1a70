using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Base of the losses between student and teacher hidden states <c>[N, D]</c> or <c>[B, S, D]</c>, averaged over the
/// rows (tokens) a mask keeps. When the widths differ it owns a learnable projection from the student's width to
/// the teacher's (a linear layer with bias, as TinyBERT's), registered as the submodule <c>projection</c> so that
/// <c>parameters()</c> hands it to the optimizer with the student. The teacher side is detached; the math runs in
/// float32 for half-precision inputs.
/// </summary>
public abstract class HiddenStateLoss : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear? projection;

    /// <summary>Creates the loss; a projection exists when both widths are given and differ.</summary>
    /// <param name="name">Module name.</param>
    /// <param name="studentWidth">The student's hidden width, or null with <paramref name="teacherWidth"/> null for equal widths.</param>
    /// <param name="teacherWidth">The teacher's hidden width.</param>
    protected HiddenStateLoss(string name, long? studentWidth, long? teacherWidth)
        : base(name)
    {
        if (studentWidth.HasValue != teacherWidth.HasValue)
        {
            throw new ArgumentException(
                $"Give both studentWidth and teacherWidth (for a projection) or neither; got studentWidth = {studentWidth?.ToString() ?? "null"}, teacherWidth = {teacherWidth?.ToString() ?? "null"}.",
                studentWidth.HasValue ? nameof(teacherWidth) : nameof(studentWidth));
        }
        if (studentWidth <= 0) throw new ArgumentOutOfRangeException(nameof(studentWidth), studentWidth, "studentWidth must be positive.");
        if (teacherWidth <= 0) throw new ArgumentOutOfRangeException(nameof(teacherWidth), teacherWidth, "teacherWidth must be positive.");
        if (studentWidth != teacherWidth) projection = nn.Linear(studentWidth!.Value, teacherWidth!.Value);
        RegisterComponents();
    }

    /// <summary>How per-row losses become the loss (default: mean over kept rows).</summary>
    public RowReduction Reduction { get; init; } = RowReduction.Mean;

    /// <summary>The learnable student→teacher projection, or null when the widths are equal.</summary>
    public Linear? Projection => projection;

    /// <summary>The loss over every row.</summary>
    /// <param name="studentHidden">Student hidden states, <c>[N, Ds]</c> or <c>[B, S, Ds]</c>.</param>
    /// <param name="teacherHidden">Teacher hidden states, <c>[N, Dt]</c> or <c>[B, S, Dt]</c> (detached inside).</param>
    public override Tensor forward(Tensor studentHidden, Tensor teacherHidden) => forward(studentHidden, teacherHidden, null);

    /// <summary>The loss over the rows the mask keeps.</summary>
    /// <param name="studentHidden">Student hidden states, <c>[N, Ds]</c> or <c>[B, S, Ds]</c>.</param>
    /// <param name="teacherHidden">Teacher hidden states, <c>[N, Dt]</c> or <c>[B, S, Dt]</c> (detached inside).</param>
    /// <param name="mask">Optional rows to keep: bool (or 0/1 integer, e.g. an attention mask) of shape <c>[N]</c> or <c>[B, S]</c>.</param>
    public Tensor forward(Tensor studentHidden, Tensor teacherHidden, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(studentHidden);
        ArgumentNullException.ThrowIfNull(teacherHidden);
        const string layout = "hidden states of shape [N, D] or [B, S, D]";
        LossInputs.RequireFloating(studentHidden, nameof(studentHidden));
        LossInputs.RequireFloating(teacherHidden, nameof(teacherHidden));
        LossInputs.RequireRank(studentHidden, nameof(studentHidden), 2, 3, layout);
        LossInputs.RequireSameLeadingShape(studentHidden, nameof(studentHidden), teacherHidden, nameof(teacherHidden));
        LossInputs.RequireSameDevice(studentHidden, nameof(studentHidden), teacherHidden, nameof(teacherHidden));
        RequireWidths(studentHidden.shape[^1], teacherHidden.shape[^1]);

        using var scope = NewDisposeScope();
        ScalarType type = LossInputs.ComputeType(studentHidden);
        Tensor? keep = RowMask.Resolve(studentHidden.shape[..^1], studentHidden.device, mask, null, 0);
        Tensor student = studentHidden;
        if (projection is not null)
        {
            if (projection.weight!.device_type != student.device_type || projection.weight.device_index != student.device_index)
            {
                throw new ArgumentException(
                    $"The projection's parameters are on {projection.weight.device} but studentHidden is on {student.device}; move the loss module with .to(device).",
                    nameof(studentHidden));
            }
            student = projection.forward(student.to(projection.weight.dtype));
        }
        Tensor s = RowMask.ZeroDropped(student.to(type), keep, 1);
        Tensor t = RowMask.ZeroDropped(teacherHidden.detach().to(type), keep, 1);
        return RowMask.Reduce(RowLoss(s, t), keep, Reduction).MoveToOuterDisposeScope();
    }

    /// <summary>The loss of each row: <c>[..., D]</c> student (already projected) and teacher in, <c>[...]</c> out.</summary>
    protected abstract Tensor RowLoss(Tensor student, Tensor teacher);

    private void RequireWidths(long studentWidth, long teacherWidth)
    {
        if (projection is null)
        {
            if (studentWidth != teacherWidth)
            {
                throw new ArgumentException(
                    $"studentHidden has width {studentWidth} but teacherHidden has width {teacherWidth}; construct {GetType().Name}(studentWidth: {studentWidth}, teacherWidth: {teacherWidth}) to learn a projection.",
                    "teacherHidden");
            }
            return;
        }
        long expectedStudent = projection.in_features, expectedTeacher = projection.out_features;
        if (studentWidth != expectedStudent)
        {
            throw new ArgumentException($"studentHidden has width {studentWidth}; this loss projects from width {expectedStudent}.", "studentHidden");
        }
        if (teacherWidth != expectedTeacher)
        {
            throw new ArgumentException($"teacherHidden has width {teacherWidth}; this loss projects to width {expectedTeacher}.", "teacherHidden");
        }
    }
}
