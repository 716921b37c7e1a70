using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Students;

/// <summary>One matched pair of layers, 0-based (their hidden states are at index layer + 1 of <c>ModelOutput.HiddenStates</c>).</summary>
/// <param name="Student">The student layer.</param>
/// <param name="Teacher">The teacher layer it is matched with.</param>
public sealed record LayerPair(int Student, int Teacher);

/// <summary>
/// Which student layer is matched with which teacher layer for intermediate losses (hidden states, attention),
/// built from a <see cref="LayerSelection"/> and validated against both models' layer counts, widths and head
/// counts. When the widths differ, the hidden-state losses it creates carry a learnable projection each.
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

    /// <summary>Maps two reference-transformer configurations.</summary>
    public static LayerMap Create(TransformerConfig teacher, TransformerConfig student, LayerSelection selection, bool includeEmbeddings = false)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(student);
        return Create(teacher.Layers, student.Layers, selection, teacher.Width, student.Width, teacher.Heads, student.Heads, includeEmbeddings);
    }

    /// <summary>Maps any two models, described by their layer counts, widths and head counts.</summary>
    /// <exception cref="ArgumentException">Layer counts, widths or heads do not fit.</exception>
    public static LayerMap Create(int teacherLayers, int studentLayers, LayerSelection selection, int teacherWidth, int studentWidth, int teacherHeads, int studentHeads, bool includeEmbeddings = false)
    {
        ArgumentNullException.ThrowIfNull(selection);
        if (teacherWidth <= 0) throw new ArgumentOutOfRangeException(nameof(teacherWidth), teacherWidth, "teacherWidth must be positive.");
        if (studentWidth <= 0) throw new ArgumentOutOfRangeException(nameof(studentWidth), studentWidth, "studentWidth must be positive.");
        if (studentHeads <= 0 || teacherHeads <= 0 || teacherHeads % studentHeads != 0)
        {
            throw new ArgumentException(
                $"The teacher's head count ({teacherHeads}) must be a positive multiple of the student's ({studentHeads}) for attention maps to be matched (teacher heads are averaged in groups).",
                nameof(studentHeads));
        }
        int[] teacherForStudent = selection.Select(teacherLayers, studentLayers);
        LayerPair[] pairs = teacherForStudent.Select((t, s) => new LayerPair(s, t)).ToArray();
        return new LayerMap(pairs, includeEmbeddings, studentWidth, teacherWidth, studentHeads, teacherHeads);
    }

    /// <summary>One <see cref="HiddenStateMseLoss"/> per matched hidden state, each with its own projection when the widths differ.</summary>
    public IReadOnlyList<HiddenStateMseLoss> CreateHiddenStateMseLosses() =>
        HiddenStateIndices.Select(_ => NeedsProjection ? new HiddenStateMseLoss(StudentWidth, TeacherWidth) : new HiddenStateMseLoss()).ToArray();

    /// <summary>One <see cref="CosineEmbeddingLoss"/> per matched hidden state, each with its own projection when the widths differ.</summary>
    public IReadOnlyList<CosineEmbeddingLoss> CreateCosineLosses() =>
        HiddenStateIndices.Select(_ => NeedsProjection ? new CosineEmbeddingLoss(StudentWidth, TeacherWidth) : new CosineEmbeddingLoss()).ToArray();

    /// <inheritdoc />
    public override string ToString() =>
        string.Join(", ", Pairs.Select(p => $"student {p.Student} <-> teacher {p.Teacher}"))
        + (IncludeEmbeddings ? " (+ embeddings)" : "")
        + (NeedsProjection ? $"; projections {StudentWidth} -> {TeacherWidth}" : "");
}
