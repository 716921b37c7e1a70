using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Universal Logit Distillation (Boizard et al. 2024, "Towards Cross-Tokenizer Distillation: the Universal Logit
/// Distillation Loss for LLMs"): for each aligned row, the student's and the teacher's probabilities sorted in
/// decreasing order, the shorter vector padded with zeros, and the L1 distance between them — the Wasserstein-1
/// distance between the two distributions when every token is one unit from every other. It needs no shared
/// vocabulary: it compares the shapes of the distributions, not which token has which probability.
/// </summary>
/// <remarks>
/// <para>Inputs are log-probabilities, <c>[rows, V_student]</c> and <c>[rows, V_teacher]</c> (temperature applied by the
/// caller; rows need not sum to one, as after a chain-rule merge of aligned spans). The value is the mean over rows.</para>
/// <para>Only the k = min(V_s, V_t) largest probabilities of the wider side are sorted (<c>topk</c>): past rank k the
/// narrower side is zero-padded, so those ranks contribute the wider side's remaining mass, Σ p − Σ top-k, exactly —
/// the same function of the logits as a full sort, so the same gradient, at a fraction of the cost for a byte-level
/// teacher (256) and a 50,257-token student.</para>
/// </remarks>
public sealed class UniversalLogitDistillationLoss : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Creates the loss.</summary>
    public UniversalLogitDistillationLoss() : base(nameof(UniversalLogitDistillationLoss))
    {
    }

    /// <summary>Mean over rows of the sorted-probability L1 distance.</summary>
    /// <exception cref="ArgumentException">The inputs are not two matrices with the same number of rows.</exception>
    public override Tensor forward(Tensor studentLogProbabilities, Tensor teacherLogProbabilities)
    {
        RequireRows(studentLogProbabilities, teacherLogProbabilities);
        using var scope = NewDisposeScope();
        return RowDistances(studentLogProbabilities.exp(), teacherLogProbabilities.exp()).mean().MoveToOuterDisposeScope();
    }

    /// <summary>The per-row distance between probability rows <paramref name="student"/> and <paramref name="teacher"/> (any widths), <c>[rows]</c>.</summary>
    public static Tensor RowDistances(Tensor student, Tensor teacher)
    {
        using var scope = NewDisposeScope();
        long k = Math.Min(student.shape[1], teacher.shape[1]);
        Tensor topStudent = k == student.shape[1] ? student.sort(1, descending: true).Values : student.topk((int)k, 1).values;
        Tensor topTeacher = k == teacher.shape[1] ? teacher.sort(1, descending: true).Values : teacher.topk((int)k, 1).values;
        Tensor distance = (topStudent - topTeacher).abs().sum(1);
        // The wider side's mass past rank k meets the other side's zero padding.
        if (student.shape[1] > k) distance = distance + (student.sum(1) - topStudent.sum(1));
        if (teacher.shape[1] > k) distance = distance + (teacher.sum(1) - topTeacher.sum(1));
        return distance.MoveToOuterDisposeScope();
    }

    internal static void RequireRows(Tensor student, Tensor teacher)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(teacher);
        if (student.dim() != 2 || teacher.dim() != 2 || student.shape[0] != teacher.shape[0])
        {
            throw new ArgumentException(
                $"Cross-tokenizer losses compare aligned rows: the student's and the teacher's log-probabilities must be [rows, V] with the same rows; got {Shapes.Describe(student.shape)} and {Shapes.Describe(teacher.shape)}.",
                nameof(teacher));
        }
    }
}
