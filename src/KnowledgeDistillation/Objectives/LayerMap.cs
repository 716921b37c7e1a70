namespace KnowledgeDistillation.Objectives;

/// <summary>One matched pair of layers, 0-based (their hidden states are at index layer + 1 of <c>ModelOutput.HiddenStates</c>).</summary>
/// <param name="Student">The student layer.</param>
/// <param name="Teacher">The teacher layer it is matched with.</param>
public sealed record LayerPair(int Student, int Teacher);

/// <summary>
/// Which student layer is matched with which teacher layer for intermediate terms (hidden states, attention),
/// validated against both models' widths and head counts. Build one from a layer selection
/// (<c>LayerSelection.UniformSpread.Map(teacherConfig, studentConfig)</c>) or from explicit pairs. When the widths
/// differ, the objective's hidden-state terms give each pair a learnable projection.
/// </summary>
public sealed class LayerMap
{
    private LayerMap(IReadOnlyList<LayerPair> pairs, bool includeEmbeddings, int studentWidth, int teacherWidth, int studentHeads, int teacherHeads)
    {
        Pairs = pairs;
        IncludeEmbeddings = includeEmbeddings;
        StudentWidth = studentWidth;
        TeacherWidth = teacherWidth;
        StudentHeads = studentHeads;
        TeacherHeads = teacherHeads;
    }

    /// <summary>The matched layers, in student order.</summary>
    public IReadOnlyList<LayerPair> Pairs { get; }

    /// <summary>Whether the embedding outputs (hidden state 0) are matched too, as TinyBERT does.</summary>
    public bool IncludeEmbeddings { get; }

    /// <summary>The student's hidden width.</summary>
    public int StudentWidth { get; }

    /// <summary>The teacher's hidden width.</summary>
    public int TeacherWidth { get; }

    /// <summary>The student's attention heads.</summary>
    public int StudentHeads { get; }

    /// <summary>The teacher's attention heads (a multiple of the student's).</summary>
    public int TeacherHeads { get; }

    /// <summary>Whether hidden states need a projection (the widths differ).</summary>
    public bool NeedsProjection => StudentWidth != TeacherWidth;

    /// <summary>(student, teacher) indices into <c>ModelOutput.HiddenStates</c>: (0, 0) first when embeddings are included, then (i + 1, j + 1).</summary>
    public IReadOnlyList<(int Student, int Teacher)> HiddenStateIndices =>
        (IncludeEmbeddings ? new[] { (0, 0) } : []).Concat(Pairs.Select(p => (p.Student + 1, p.Teacher + 1))).ToArray();

    /// <summary>(student, teacher) indices into the attention lists of <c>ModelOutput</c>.</summary>
    public IReadOnlyList<(int Student, int Teacher)> AttentionIndices => Pairs.Select(p => (p.Student, p.Teacher)).ToArray();

    /// <summary>A map from explicit pairs (student layer, teacher layer), 0-based, in student order.</summary>
    /// <exception cref="ArgumentException">A layer index is negative, a student layer appears twice, or widths or heads do not fit.</exception>
    public static LayerMap FromPairs(IEnumerable<LayerPair> pairs, int teacherWidth, int studentWidth, int teacherHeads, int studentHeads, bool includeEmbeddings = false)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        LayerPair[] list = pairs.ToArray();
        if (list.Length == 0 && !includeEmbeddings) throw new ArgumentException("A layer map needs at least one pair (or includeEmbeddings).", nameof(pairs));
        LayerPair? negative = list.FirstOrDefault(p => p.Student < 0 || p.Teacher < 0);
        if (negative is not null) throw new ArgumentException($"Layer indices are 0 or more; got {negative}.", nameof(pairs));
        int? repeated = list.GroupBy(p => p.Student).Where(g => g.Count() > 1).Select(g => (int?)g.Key).FirstOrDefault();
        if (repeated is not null) throw new ArgumentException($"Student layer {repeated} is matched twice.", nameof(pairs));
        if (teacherWidth <= 0) throw new ArgumentOutOfRangeException(nameof(teacherWidth), teacherWidth, "teacherWidth must be positive.");
        if (studentWidth <= 0) throw new ArgumentOutOfRangeException(nameof(studentWidth), studentWidth, "studentWidth must be positive.");
        if (studentHeads <= 0 || teacherHeads <= 0 || teacherHeads % studentHeads != 0)
        {
            throw new ArgumentException(
                $"The teacher's head count ({teacherHeads}) must be a positive multiple of the student's ({studentHeads}) for attention maps to be matched (teacher heads are averaged in groups).",
                nameof(studentHeads));
        }
        return new LayerMap(list.OrderBy(p => p.Student).ToArray(), includeEmbeddings, studentWidth, teacherWidth, studentHeads, teacherHeads);
    }

    /// <inheritdoc />
    public override string ToString() =>
        string.Join(", ", Pairs.Select(p => $"student {p.Student} <-> teacher {p.Teacher}"))
        + (IncludeEmbeddings ? " (+ embeddings)" : "")
        + (NeedsProjection ? $"; projections {StudentWidth} -> {TeacherWidth}" : "");
}
