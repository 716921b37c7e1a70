using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Attention loss: Σ (A_s − A_t)² / (number of kept cells) over the cells of the [B, H, S, S] attention maps whose query and key are both kept, as TinyBERT's attention loss but without counting padded cells.
/// </summary>
/// <remarks>
/// <para>
/// Maps are <c>[B, H, S, S]</c> (batch, heads, queries, keys) and may hold probabilities or pre-softmax scores
/// (<see cref="AttentionMapKind"/>). With a padding mask <c>[B, S]</c> (true or 1 = real token), a cell (i, j) counts
/// only when token i and token j are both real: padded cells leave both the sum and the count. (TinyBERT zeroes
/// them but still divides by B·H·S·S, which shrinks the loss of short sequences.) With <see cref="AttentionMapKind.Scores"/>,
/// cells at or below <see cref="MaskedScoreThreshold"/> in either map (causal -inf, additive -10000 masks) are also
/// left out.
/// </para>
/// <para>
/// Head counts may differ when the teacher's is a multiple of the student's: teacher heads are averaged in
/// consecutive groups (teacher heads g·k … g·k + k − 1 match student head g, k = H_t / H_s). Any other mismatch is
/// rejected. The teacher is detached; the math runs in float32 for half-precision inputs.
/// </para>
/// </remarks>
public sealed class AttentionMseLoss : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Creates the loss.</summary>
    /// <param name="kind">Whether the maps are probabilities or pre-softmax scores.</param>
    /// <param name="maskedScoreThreshold">With scores, cells at or below this value in either map are treated as masked (default -1e4).</param>
    /// <param name="countMaskedCells">
    /// False (default): masked cells leave both the sum and the count. True: TinyBERT's convention — each map's masked
    /// cells are set to 0 on their own (a cell masked in one map only still counts as (0 − other)²), padded cells are
    /// zeroed in both, and the sum is divided by every cell, B·H·S·S. See <see cref="TinyBert"/>.
    /// </param>
    public AttentionMseLoss(AttentionMapKind kind = AttentionMapKind.Probabilities, double maskedScoreThreshold = -1e4, bool countMaskedCells = false)
        : base(nameof(AttentionMseLoss))
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown attention map kind.");
        if (double.IsNaN(maskedScoreThreshold)) throw new ArgumentOutOfRangeException(nameof(maskedScoreThreshold), maskedScoreThreshold, "maskedScoreThreshold must be a number.");
        Kind = kind;
        MaskedScoreThreshold = maskedScoreThreshold;
        CountMaskedCells = countMaskedCells;
    }

    /// <summary>
    /// TinyBERT's attention loss exactly (Jiao et al. 2020, its general-distillation code): pre-softmax scores, cells
    /// at or below −100 set to 0 in each map separately (its attention masks add −10000, so a masked cell holds
    /// score − 10000), then the mean squared difference over all B·H·S·S cells.
    /// </summary>
    public static AttentionMseLoss TinyBert() => new(AttentionMapKind.Scores, maskedScoreThreshold: -100, countMaskedCells: true);

    /// <summary>Whether masked cells are zeroed and counted (TinyBERT) instead of left out.</summary>
    public bool CountMaskedCells { get; }

    /// <summary>What the maps hold.</summary>
    public AttentionMapKind Kind { get; }

    /// <summary>With <see cref="AttentionMapKind.Scores"/>, the value at or below which a cell counts as masked.</summary>
    public double MaskedScoreThreshold { get; }

    /// <summary>The loss over every cell.</summary>
    /// <param name="studentAttention">Student maps, <c>[B, Hs, S, S]</c>.</param>
    /// <param name="teacherAttention">Teacher maps, <c>[B, Ht, S, S]</c> with Ht a multiple of Hs (detached inside).</param>
    public override Tensor forward(Tensor studentAttention, Tensor teacherAttention) => forward(studentAttention, teacherAttention, null);

    /// <summary>The loss over the cells whose query and key are both real tokens.</summary>
    /// <param name="studentAttention">Student maps, <c>[B, Hs, S, S]</c>.</param>
    /// <param name="teacherAttention">Teacher maps, <c>[B, Ht, S, S]</c> with Ht a multiple of Hs (detached inside).</param>
    /// <param name="paddingMask">Optional <c>[B, S]</c>, bool or 0/1 integer: true/1 marks a real token.</param>
    public Tensor forward(Tensor studentAttention, Tensor teacherAttention, Tensor? paddingMask)
    {
        ArgumentNullException.ThrowIfNull(studentAttention);
        ArgumentNullException.ThrowIfNull(teacherAttention);
        const string layout = "attention maps of shape [B, H, S, S]";
        LossInputs.RequireFloating(studentAttention, nameof(studentAttention));
        LossInputs.RequireFloating(teacherAttention, nameof(teacherAttention));
        LossInputs.RequireRank(studentAttention, nameof(studentAttention), 4, 4, layout);
        LossInputs.RequireRank(teacherAttention, nameof(teacherAttention), 4, 4, layout);
        LossInputs.RequireSameDevice(studentAttention, nameof(studentAttention), teacherAttention, nameof(teacherAttention));
        long[] s = studentAttention.shape, t = teacherAttention.shape;
        if (s[0] != t[0] || s[2] != t[2] || s[3] != t[3])
        {
            throw new ArgumentException(
                $"studentAttention has shape {Shapes.Describe(s)} and teacherAttention has shape {Shapes.Describe(t)}; expected the same batch size and sequence lengths.",
                nameof(teacherAttention));
        }
        long studentHeads = s[1], teacherHeads = t[1];
        if (studentHeads < 1 || teacherHeads < 1)
        {
            throw new ArgumentException(
                $"attention maps need at least one head; got studentAttention {Shapes.Describe(s)} and teacherAttention {Shapes.Describe(t)}.",
                studentHeads < 1 ? nameof(studentAttention) : nameof(teacherAttention));
        }
        if (teacherHeads % studentHeads != 0)
        {
            throw new ArgumentException(
                $"teacherAttention has {teacherHeads} heads and studentAttention {studentHeads}; the teacher's head count must be a multiple of the student's (teacher heads are averaged in groups), or map the heads yourself.",
                nameof(teacherAttention));
        }
        if (paddingMask is not null && s[2] != s[3])
        {
            throw new ArgumentException($"A padding mask needs square self-attention maps; got {s[2]} queries and {s[3]} keys.", nameof(paddingMask));
        }

        using var scope = NewDisposeScope();
        ScalarType type = LossInputs.ComputeType(studentAttention);
        Tensor student = studentAttention.to(type);
        Tensor teacher = teacherAttention.detach().to(type);
        if (teacherHeads != studentHeads)
        {
            teacher = teacher.view(t[0], studentHeads, teacherHeads / studentHeads, t[2], t[3]).mean([2]);
        }

        Tensor? keep = null;
        Tensor? tokens = RowMask.Resolve([s[0], s[2]], student.device, paddingMask, null, 0, nameof(paddingMask));
        if (tokens is not null) keep = tokens.unsqueeze(1).unsqueeze(-1).logical_and(tokens.unsqueeze(1).unsqueeze(2)).expand(s[0], studentHeads, s[2], s[3]);
        Tensor zero = zeros(1, dtype: type, device: student.device);
        if (CountMaskedCells)
        {
            if (Kind == AttentionMapKind.Scores)
            {
                student = where(student.le(MaskedScoreThreshold), zero, student);
                teacher = where(teacher.le(MaskedScoreThreshold), zero, teacher);
            }
            if (keep is not null)
            {
                student = where(keep, student, zero);
                teacher = where(keep, teacher, zero);
            }
            return RowMask.Mean((student - teacher).square(), null).MoveToOuterDisposeScope();
        }
        if (Kind == AttentionMapKind.Scores)
        {
            Tensor real = student.gt(MaskedScoreThreshold).logical_and(teacher.gt(MaskedScoreThreshold));
            keep = keep is null ? real : keep.logical_and(real);
        }
        if (keep is null) return RowMask.Mean((student - teacher).square(), null).MoveToOuterDisposeScope();
        // where() on the inputs as well: a masked -inf score must not turn into NaN in the gradient.
        return RowMask.Mean((where(keep, student, zero) - where(keep, teacher, zero)).square(), keep).MoveToOuterDisposeScope();
    }
}
