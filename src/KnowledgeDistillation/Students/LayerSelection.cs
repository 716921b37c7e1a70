using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Students;

/// <summary>
/// Which teacher layer initialises (or is matched with) each student layer. <see cref="Select"/> returns, for
/// student layers 0 … S − 1, the teacher layer indices (0-based); every strategy validates its request.
/// </summary>
public abstract record LayerSelection
{
    /// <summary>Layers 0, 2, 4, … — the first S even-numbered teacher layers. Needs 2S − 1 ≤ T.</summary>
    public static LayerSelection EveryOther { get; } = new EveryOtherSelection();

    /// <summary>
    /// S layers spread evenly from the first to the last: round(i·(T − 1)/(S − 1)), halves rounded up, so
    /// 12 → 6 gives 0, 2, 4, 7, 9, 11 and 12 → 3 gives 0, 6, 11 (the DistilBERT extraction scripts' choice).
    /// A single student layer takes teacher layer 0.
    /// </summary>
    public static LayerSelection UniformSpread { get; } = new UniformSpreadSelection();

    /// <summary>Teacher layers 0 … S − 1.</summary>
    public static LayerSelection FirstK { get; } = new FirstKSelection();

    /// <summary>Teacher layers T − S … T − 1.</summary>
    public static LayerSelection LastK { get; } = new LastKSelection();

    /// <summary>Exactly these teacher layers, in this order (no duplicates).</summary>
    public static LayerSelection Explicit(params int[] teacherLayers) =>
        new ExplicitSelection((int[])(teacherLayers ?? throw new ArgumentNullException(nameof(teacherLayers))).Clone());

    /// <summary>The layer map for intermediate terms between two reference-transformer configurations.</summary>
    /// <exception cref="ArgumentException">Layer counts, widths or heads do not fit.</exception>
    public LayerMap Map(TransformerConfig teacher, TransformerConfig student, bool includeEmbeddings = false)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(student);
        return Map(teacher.Layers, student.Layers, teacher.Width, student.Width, teacher.Heads, student.Heads, includeEmbeddings);
    }

    /// <summary>The layer map for intermediate terms between any two models, described by their layer counts, widths and head counts.</summary>
    /// <exception cref="ArgumentException">Layer counts, widths or heads do not fit.</exception>
    public LayerMap Map(int teacherLayers, int studentLayers, int teacherWidth, int studentWidth, int teacherHeads, int studentHeads, bool includeEmbeddings = false) =>
        LayerMap.FromPairs(Select(teacherLayers, studentLayers).Select((t, s) => new LayerPair(s, t)), teacherWidth, studentWidth, teacherHeads, studentHeads, includeEmbeddings);

    /// <summary>The teacher layer for each of <paramref name="studentLayers"/> student layers.</summary>
    /// <exception cref="ArgumentException">The request is impossible (more student than teacher layers, duplicates, out of range, …).</exception>
    public int[] Select(int teacherLayers, int studentLayers)
    {
        if (teacherLayers <= 0) throw new ArgumentOutOfRangeException(nameof(teacherLayers), teacherLayers, $"teacherLayers must be positive; got {teacherLayers}.");
        if (studentLayers <= 0) throw new ArgumentOutOfRangeException(nameof(studentLayers), studentLayers, $"studentLayers must be positive; got {studentLayers}.");
        if (studentLayers > teacherLayers)
        {
            throw new ArgumentException($"A student cannot have more layers ({studentLayers}) than its teacher ({teacherLayers}) when initialised from teacher layers.", nameof(studentLayers));
        }
        int[] selected = Choose(teacherLayers, studentLayers);
        if (selected.Length != studentLayers)
        {
            throw new ArgumentException($"{Name} selects {selected.Length} teacher layers, but the student has {studentLayers}.", nameof(studentLayers));
        }
        int outOfRange = Array.FindIndex(selected, i => i < 0 || i >= teacherLayers);
        if (outOfRange >= 0)
        {
            throw new ArgumentException($"{Name} selects teacher layer {selected[outOfRange]}, but the teacher's layers are 0 to {teacherLayers - 1}.", nameof(teacherLayers));
        }
        int duplicate = selected.GroupBy(i => i).Where(g => g.Count() > 1).Select(g => g.Key).DefaultIfEmpty(-1).First();
        if (duplicate >= 0) throw new ArgumentException($"{Name} selects teacher layer {duplicate} more than once.", nameof(studentLayers));
        return selected;
    }

    /// <summary>A short name for messages and reports.</summary>
    public abstract string Name { get; }

    /// <summary>The raw choice; <see cref="Select"/> validates it.</summary>
    protected abstract int[] Choose(int teacherLayers, int studentLayers);

    private sealed record EveryOtherSelection : LayerSelection
    {
        public override string Name => "every-other";

        protected override int[] Choose(int teacherLayers, int studentLayers)
        {
            if (2 * studentLayers - 1 > teacherLayers)
            {
                throw new ArgumentException(
                    $"every-other needs 2 × {studentLayers} − 1 = {2 * studentLayers - 1} teacher layers for {studentLayers} student layers; the teacher has {teacherLayers}. Use UniformSpread or FirstK.",
                    nameof(studentLayers));
            }
            return Enumerable.Range(0, studentLayers).Select(i => 2 * i).ToArray();
        }
    }

    private sealed record UniformSpreadSelection : LayerSelection
    {
        public override string Name => "uniform spread";

        protected override int[] Choose(int teacherLayers, int studentLayers) =>
            studentLayers == 1
                ? [0]
                : Enumerable.Range(0, studentLayers)
                    .Select(i => (int)Math.Round(i * (teacherLayers - 1) / (double)(studentLayers - 1), MidpointRounding.AwayFromZero))
                    .ToArray();
    }

    private sealed record FirstKSelection : LayerSelection
    {
        public override string Name => "first-k";

        protected override int[] Choose(int teacherLayers, int studentLayers) => Enumerable.Range(0, studentLayers).ToArray();
    }

    private sealed record LastKSelection : LayerSelection
    {
        public override string Name => "last-k";

        protected override int[] Choose(int teacherLayers, int studentLayers) => Enumerable.Range(teacherLayers - studentLayers, studentLayers).ToArray();
    }

    private sealed record ExplicitSelection(int[] Layers) : LayerSelection
    {
        public override string Name => $"explicit [{string.Join(", ", Layers)}]";

        protected override int[] Choose(int teacherLayers, int studentLayers) => (int[])Layers.Clone();
    }
}
