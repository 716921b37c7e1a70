using System.Globalization;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

/// <summary>
/// How logit terms compare a teacher and a student whose logits have different widths because one model's embedding
/// matrix was padded (151,936 rows in one Qwen checkpoint, 152,064 in another; 50,257 vs 50,304 for GPT-2): both are cut
/// to the shared first <see cref="SharedSize"/> entries. Padding rows are never a real token, so nothing is lost —
/// but only when the two models share a tokenizer, which <see cref="Between"/> checks token by token. Give it to
/// <see cref="DistillationObjectiveBuilder.AlignVocabularies"/>; without one, a logit term refuses logits of different widths.
/// </summary>
public sealed class VocabularyAlignment
{
    private VocabularyAlignment(int sharedSize, string evidence)
    {
        SharedSize = sharedSize;
        Evidence = evidence;
    }

    /// <summary>How many leading logits both models keep.</summary>
    public int SharedSize { get; }

    /// <summary>What was checked before this alignment was allowed.</summary>
    public string Evidence { get; }

    /// <summary>
    /// The alignment of two models with <paramref name="studentLogits"/> and <paramref name="teacherLogits"/> outputs per
    /// token, after checking that their tokenizers have the same size, produce no id at or beyond the shared size, and
    /// decode every id to the same text.
    /// </summary>
    /// <exception cref="ArgumentException">The tokenizers differ (the message names the first id that decodes differently, or both sizes), or one tokenizer's ids do not fit the shared size.</exception>
    public static VocabularyAlignment Between(ITokenVocabulary student, ITokenVocabulary teacher, int studentLogits, int teacherLogits)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(teacher);
        RequirePositive(studentLogits, nameof(studentLogits));
        RequirePositive(teacherLogits, nameof(teacherLogits));
        int shared = Math.Min(studentLogits, teacherLogits);
        if (student.VocabularySize != teacher.VocabularySize)
        {
            throw new ArgumentException(
                $"The student's tokenizer has {Count(student.VocabularySize)} tokens and the teacher's {Count(teacher.VocabularySize)}: they are different tokenizers, " +
                "so their logits cannot be aligned by position. Distil with the teacher's tokenizer, or use a cross-tokenizer method.", nameof(student));
        }
        if (student.VocabularySize > shared)
        {
            throw new ArgumentException(
                $"The tokenizers produce ids up to {Count(student.VocabularySize - 1)}, but the narrower model has only {Count(shared)} logits per token; the models do not fit this tokenizer.", nameof(student));
        }
        for (int id = 0; id < student.VocabularySize; id++)
        {
            string s = student.Decode([id]), t = teacher.Decode([id]);
            if (!string.Equals(s, t, StringComparison.Ordinal))
            {
                throw new ArgumentException(
                    $"Token id {id} decodes to \"{Escape(s)}\" in the student's tokenizer but to \"{Escape(t)}\" in the teacher's; the logits cannot be aligned by position.", nameof(student));
            }
        }
        return new VocabularyAlignment(shared,
            $"both tokenizers have {Count(student.VocabularySize)} tokens and decode each the same; logits {Count(studentLogits)} (student) and {Count(teacherLogits)} (teacher) cut to {Count(shared)}");
    }

    /// <summary>
    /// Cuts both models' logits to the first <paramref name="sharedSize"/> entries without checking tokenizers: only
    /// for models you know share one (the error of a logit term names the sizes it saw).
    /// </summary>
    public static VocabularyAlignment TruncateWithoutChecking(int sharedSize)
    {
        RequirePositive(sharedSize, nameof(sharedSize));
        return new VocabularyAlignment(sharedSize, $"asserted by the caller: cut to {Count(sharedSize)} without a tokenizer check");
    }

    /// <summary>The first <see cref="SharedSize"/> logits of <paramref name="logits"/> (a view).</summary>
    /// <exception cref="ArgumentException">The logits are narrower than <see cref="SharedSize"/>.</exception>
    public Tensor Apply(Tensor logits, string whose)
    {
        ArgumentNullException.ThrowIfNull(logits);
        long width = logits.shape[^1];
        if (width < SharedSize)
        {
            throw new ArgumentException($"The {whose} logits have {Count(width)} entries per row, fewer than the alignment's shared size {Count(SharedSize)}.", nameof(logits));
        }
        return width == SharedSize ? logits : logits.narrow(-1, 0, SharedSize);
    }

    private static void RequirePositive(int value, string name)
    {
        if (value < 1) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive; got {value}.");
    }

    private static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    private static string Escape(string s) => s.Replace("\n", "\\n", StringComparison.Ordinal).Replace("\t", "\\t", StringComparison.Ordinal);
}
