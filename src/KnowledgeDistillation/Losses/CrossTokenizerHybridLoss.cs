using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// The hybrid cross-tokenizer loss of TRL's GOLD trainer: on aligned rows, the tokens both vocabularies hold (the same
/// bytes; <c>VocabularyMatch</c> finds them) are compared directly with the generalised Jensen-Shannon divergence
/// (β·KL(p_t ‖ m) + (1 − β)·KL(p_s ‖ m), m = β·p_t + (1 − β)·p_s, summed over the shared tokens), and the tokens
/// only one side has by <see cref="UniversalLogitDistillationLoss"/> on their sorted probabilities:
/// w_matched · JSD + w_unmatched · ULD, each a mean over rows.
/// </summary>
/// <remarks>
/// Inputs are log-probabilities of aligned rows (after a chain-rule merge they need not sum to one; the divergence
/// is taken on the sub-vectors as they are, where it stays ≥ 0). Without weights, w_matched is the share of the
/// teacher's vocabulary that is shared and w_unmatched the rest, as GOLD does. When either side has no unshared
/// token the ULD part is 0.
/// </remarks>
public sealed class CrossTokenizerHybridLoss : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Tensor _studentMatched, _teacherMatched, _studentUnmatched, _teacherUnmatched;

    /// <summary>Creates the loss for a pair of vocabularies.</summary>
    /// <param name="studentShared">The shared tokens' student ids (<c>VocabularyMatch.StudentIds</c>).</param>
    /// <param name="teacherShared">The same tokens' teacher ids, in the same order.</param>
    /// <param name="studentVocabularySize">The student's vocabulary size (its logits' width).</param>
    /// <param name="teacherVocabularySize">The teacher's.</param>
    /// <param name="beta">β in [0, 1] of the generalised JSD on shared tokens (0 forward KL, 1 reverse KL).</param>
    /// <param name="matchedWeight">w_matched; null for the share of the teacher's vocabulary that is shared.</param>
    /// <param name="unmatchedWeight">w_unmatched; null for 1 − w_matched.</param>
    public CrossTokenizerHybridLoss(IReadOnlyList<long> studentShared, IReadOnlyList<long> teacherShared, int studentVocabularySize, int teacherVocabularySize,
        double beta = 0.5, double? matchedWeight = null, double? unmatchedWeight = null) : base(nameof(CrossTokenizerHybridLoss))
    {
        ArgumentNullException.ThrowIfNull(studentShared);
        ArgumentNullException.ThrowIfNull(teacherShared);
        if (studentShared.Count != teacherShared.Count || studentShared.Count == 0)
        {
            throw new ArgumentException($"The shared tokens need one student id per teacher id, at least one; got {studentShared.Count} and {teacherShared.Count}.", nameof(teacherShared));
        }
        RequireIds(studentShared, studentVocabularySize, nameof(studentShared));
        RequireIds(teacherShared, teacherVocabularySize, nameof(teacherShared));
        if (!(beta is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "β must be in [0, 1].");
        foreach ((double? w, string name) in new[] { (matchedWeight, nameof(matchedWeight)), (unmatchedWeight, nameof(unmatchedWeight)) })
        {
            if (w is { } value && !(double.IsFinite(value) && value >= 0)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be finite and 0 or more.");
        }
        StudentVocabularySize = studentVocabularySize;
        TeacherVocabularySize = teacherVocabularySize;
        Beta = beta;
        MatchedWeight = matchedWeight ?? (double)teacherShared.Count / teacherVocabularySize;
        UnmatchedWeight = unmatchedWeight ?? 1 - MatchedWeight;
        _studentMatched = tensor(studentShared.ToArray());
        _teacherMatched = tensor(teacherShared.ToArray());
        _studentUnmatched = tensor(Complement(studentShared, studentVocabularySize));
        _teacherUnmatched = tensor(Complement(teacherShared, teacherVocabularySize));
        register_buffer("student_matched", _studentMatched, persistent: false);
        register_buffer("teacher_matched", _teacherMatched, persistent: false);
        register_buffer("student_unmatched", _studentUnmatched, persistent: false);
        register_buffer("teacher_unmatched", _teacherUnmatched, persistent: false);
    }

    /// <summary>The student's vocabulary size.</summary>
    public int StudentVocabularySize { get; }

    /// <summary>The teacher's vocabulary size.</summary>
    public int TeacherVocabularySize { get; }

    /// <summary>β of the divergence on shared tokens.</summary>
    public double Beta { get; }

    /// <summary>The weight of the shared-token divergence.</summary>
    public double MatchedWeight { get; }

    /// <summary>The weight of the ULD part.</summary>
    public double UnmatchedWeight { get; }

    /// <summary>w_matched · JSD(shared) + w_unmatched · ULD(unshared), means over rows.</summary>
    /// <exception cref="ArgumentException">The rows differ, or a width is not the vocabulary size the match was made for.</exception>
    public override Tensor forward(Tensor studentLogProbabilities, Tensor teacherLogProbabilities)
    {
        UniversalLogitDistillationLoss.RequireRows(studentLogProbabilities, teacherLogProbabilities);
        if (studentLogProbabilities.shape[1] != StudentVocabularySize || teacherLogProbabilities.shape[1] != TeacherVocabularySize)
        {
            throw new ArgumentException(
                $"The loss was made for {StudentVocabularySize} student and {TeacherVocabularySize} teacher tokens; the rows have {studentLogProbabilities.shape[1]} and {teacherLogProbabilities.shape[1]}.",
                nameof(studentLogProbabilities));
        }
        using var scope = NewDisposeScope();
        Device device = studentLogProbabilities.device;
        Tensor s = studentLogProbabilities.index_select(1, _studentMatched.to(device));
        Tensor t = teacherLogProbabilities.index_select(1, _teacherMatched.to(device));
        Tensor total = MatchedWeight * Divergence(s, t, Beta).mean();
        if (_studentUnmatched.shape[0] > 0 && _teacherUnmatched.shape[0] > 0 && UnmatchedWeight > 0)
        {
            Tensor su = studentLogProbabilities.index_select(1, _studentUnmatched.to(device)).exp();
            Tensor tu = teacherLogProbabilities.index_select(1, _teacherUnmatched.to(device)).exp();
            total = total + UnmatchedWeight * UniversalLogitDistillationLoss.RowDistances(su, tu).mean();
        }
        return total.MoveToOuterDisposeScope();
    }

    /// <summary>Per-row generalised JSD between (possibly unnormalised) log-probability rows; 0·log 0 is taken as 0.</summary>
    internal static Tensor Divergence(Tensor student, Tensor teacher, double beta)
    {
        if (beta == 0) return KL(teacher, student);
        if (beta == 1) return KL(student, teacher);
        Tensor mixture = stack([teacher + Math.Log(beta), student + Math.Log(1 - beta)]).logsumexp(0);
        return KL(teacher, mixture) * beta + KL(student, mixture) * (1 - beta);
    }

    /// <summary>Σ a (log a − log b) per row, with the rows where a = 0 contributing 0.</summary>
    private static Tensor KL(Tensor logA, Tensor logB)
    {
        Tensor a = logA.exp();
        Tensor terms = a * (logA - logB);
        return where(a > 0, terms, zeros_like(terms)).sum(1);
    }

    private static void RequireIds(IReadOnlyList<long> ids, int size, string name)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(name, size, "A vocabulary size must be positive.");
        if (ids.FirstOrDefault(id => id < 0 || id >= size, -1) is var bad && bad != -1) throw new ArgumentOutOfRangeException(name, bad, $"Shared token id {bad} is outside the vocabulary of {size}.");
        if (ids.Distinct().Count() != ids.Count) throw new ArgumentException("A token id is shared twice; each id pairs with one token of the other side.", name);
    }

    private static long[] Complement(IReadOnlyList<long> ids, int size)
    {
        var taken = new bool[size];
        foreach (long id in ids) taken[id] = true;
        return Enumerable.Range(0, size).Where(i => !taken[i]).Select(i => (long)i).ToArray();
    }
}
