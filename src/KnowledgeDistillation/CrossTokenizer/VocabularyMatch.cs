namespace KnowledgeDistillation.CrossTokenizer;

/// <summary>
/// The tokens two vocabularies share — the same bytes under an id of each — for the hybrid cross-tokenizer loss,
/// which compares the probabilities of shared tokens directly and the rest by sorted values (ULD). Matching on bytes
/// rather than on the vocabularies' written forms pairs GPT-2's "Ġthe" with SentencePiece's "▁the" and a byte
/// model's bytes with the BPE tokens of one byte.
/// </summary>
public sealed class VocabularyMatch
{
    private VocabularyMatch(long[] student, long[] teacher, int studentSize, int teacherSize)
    {
        StudentIds = student;
        TeacherIds = teacher;
        StudentVocabularySize = studentSize;
        TeacherVocabularySize = teacherSize;
    }

    /// <summary>The shared tokens' student ids, in the order of <see cref="TeacherIds"/>.</summary>
    public IReadOnlyList<long> StudentIds { get; }

    /// <summary>The shared tokens' teacher ids.</summary>
    public IReadOnlyList<long> TeacherIds { get; }

    /// <summary>The student's vocabulary size the match was made for.</summary>
    public int StudentVocabularySize { get; }

    /// <summary>The teacher's vocabulary size.</summary>
    public int TeacherVocabularySize { get; }

    /// <summary>Number of shared tokens.</summary>
    public int Count => StudentIds.Count;

    /// <summary>Pairs every teacher token with the student token of the same bytes (the first such id, where a vocabulary has two).</summary>
    /// <exception cref="ArgumentException">The two vocabularies share no token.</exception>
    public static VocabularyMatch Between(TokenByteStrings student, TokenByteStrings teacher)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(teacher);
        var studentOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < student.Count; id++)
        {
            if (student[id] is { Length: > 0 } bytes) studentOf.TryAdd(Convert.ToHexString(bytes), id);
        }
        var s = new List<long>();
        var t = new List<long>();
        var used = new HashSet<int>();
        for (int id = 0; id < teacher.Count; id++)
        {
            if (teacher[id] is { Length: > 0 } bytes && studentOf.TryGetValue(Convert.ToHexString(bytes), out int match) && used.Add(match))
            {
                s.Add(match);
                t.Add(id);
            }
        }
        if (s.Count == 0) throw new ArgumentException($"The vocabularies of {student.Source} and {teacher.Source} share no token; use ULD alone.", nameof(teacher));
        return new VocabularyMatch([.. s], [.. t], student.Count, teacher.Count);
    }
}
