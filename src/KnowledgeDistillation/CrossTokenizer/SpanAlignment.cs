using static TorchSharp.torch;

namespace KnowledgeDistillation.CrossTokenizer;

/// <summary>One aligned span: <c>StudentCount</c> consecutive student rows from <c>StudentStart</c> cover the same bytes of the text as <c>TeacherCount</c> teacher rows from <c>TeacherStart</c>.</summary>
public readonly record struct AlignedSpan(int StudentStart, int StudentCount, int TeacherStart, int TeacherCount);

/// <summary>
/// Where two tokenizations of one text agree: the text is cut at every byte position where both a student token and
/// a teacher token end, so that each span of k student tokens meets a span of m teacher tokens holding the same bytes
/// (a multi-byte character split differently by the two sides stays inside one span). Tokens that cover no bytes (a
/// BOS or EOS one side adds) belong to no span and are not compared; the one leading space a SentencePiece-style
/// tokenizer puts before the text (Mistral's, Llama 2's "▁") is part of that side's first token.
/// </summary>
/// <remarks>
/// Rows index the distilled rows of each side, in order — for a causal LM, the target tokens: row t is the
/// distribution that predicted token t. Within a span the probabilities are combined by the chain rule
/// (<see cref="MergeLogProbabilities"/>), as TRL's GOLD trainer does.
/// </remarks>
public sealed class SpanAlignment
{
    private SpanAlignment(IReadOnlyList<AlignedSpan> spans, int studentRows, int teacherRows)
    {
        Spans = spans;
        StudentRows = studentRows;
        TeacherRows = teacherRows;
    }

    /// <summary>The aligned spans, in text order.</summary>
    public IReadOnlyList<AlignedSpan> Spans { get; }

    /// <summary>How many student rows the alignment indexes (aligned or not).</summary>
    public int StudentRows { get; }

    /// <summary>How many teacher rows it indexes.</summary>
    public int TeacherRows { get; }

    /// <summary>Aligns two tokenizations of one text from the number of UTF-8 bytes each token holds, in order.</summary>
    /// <exception cref="ArgumentException">A length is negative, or the two sides' byte counts differ by more than one leading space (they are not the same text).</exception>
    public static SpanAlignment FromByteLengths(IReadOnlyList<int> studentLengths, IReadOnlyList<int> teacherLengths)
    {
        ArgumentNullException.ThrowIfNull(studentLengths);
        ArgumentNullException.ThrowIfNull(teacherLengths);
        return FromByteOffsets(Offsets(studentLengths, nameof(studentLengths)), Offsets(teacherLengths, nameof(teacherLengths)));
    }

    /// <summary>Aligns two tokenizations of one text from each token's byte range (start, end exclusive), in order.</summary>
    /// <exception cref="ArgumentException">The ranges are not in order and adjacent, or the sides end at different bytes.</exception>
    public static SpanAlignment FromByteOffsets(IReadOnlyList<(int Start, int End)> student, IReadOnlyList<(int Start, int End)> teacher)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(teacher);
        RequireContiguous(student, nameof(student));
        RequireContiguous(teacher, nameof(teacher));
        int studentEnd = LastEnd(student), teacherEnd = LastEnd(teacher);
        int studentBegin = FirstStart(student), teacherBegin = FirstStart(teacher);
        int extra = (studentEnd - studentBegin) - (teacherEnd - teacherBegin);
        if (Math.Abs(extra) > 1)
        {
            throw new ArgumentException(
                $"The student's tokens hold {studentEnd - studentBegin} bytes and the teacher's {teacherEnd - teacherBegin}: the two sides must tokenize the same text " +
                "(they may differ only by the one leading space a SentencePiece-style tokenizer puts before the text).", nameof(teacher));
        }
        // A side with one byte more starts with the space its tokenizer added: its positions count from the byte after it.
        if (extra > 0) studentBegin += extra;
        else teacherBegin -= extra;
        var spans = new List<AlignedSpan>();
        int s = Skip(student, 0), t = Skip(teacher, 0);
        int spanS = s, spanT = t;
        while (s < student.Count && t < teacher.Count)
        {
            int sEnd = student[s].End - studentBegin, tEnd = teacher[t].End - teacherBegin;
            if (sEnd < tEnd) s = Skip(student, s + 1);
            else if (tEnd < sEnd) t = Skip(teacher, t + 1);
            else
            {
                int nextS = Skip(student, s + 1), nextT = Skip(teacher, t + 1);
                spans.Add(new AlignedSpan(spanS, s + 1 - spanS, spanT, t + 1 - spanT));
                (s, t, spanS, spanT) = (nextS, nextT, nextS, nextT);
            }
        }
        return new SpanAlignment(spans, student.Count, teacher.Count);
    }

    /// <summary>
    /// The alignment of next-token targets from the alignment of two whole token sequences: a causal LM's row t predicts
    /// token t + 1, so each span moves one row back, and spans holding either side's first token (which no row predicts)
    /// are dropped. The result indexes <c>n − 1</c> rows per side.
    /// </summary>
    public SpanAlignment ForNextTokenTargets()
    {
        var spans = Spans.Where(x => x.StudentStart > 0 && x.TeacherStart > 0)
            .Select(x => new AlignedSpan(x.StudentStart - 1, x.StudentCount, x.TeacherStart - 1, x.TeacherCount)).ToList();
        return new SpanAlignment(spans, Math.Max(0, StudentRows - 1), Math.Max(0, TeacherRows - 1));
    }

    /// <summary>
    /// The alignments of several sequences as one over their rows laid end to end (the flattened rows of a batch): each
    /// part's rows are shifted by the rows of the parts before it, or by the offsets given.
    /// </summary>
    public static SpanAlignment Concatenate(IEnumerable<(SpanAlignment Part, int StudentRowOffset, int TeacherRowOffset)> parts, int studentRows, int teacherRows)
    {
        ArgumentNullException.ThrowIfNull(parts);
        var spans = new List<AlignedSpan>();
        foreach ((SpanAlignment part, int so, int to) in parts)
        {
            if (so < 0 || to < 0 || so + part.StudentRows > studentRows || to + part.TeacherRows > teacherRows)
            {
                throw new ArgumentOutOfRangeException(nameof(parts), $"A part of {part.StudentRows} student and {part.TeacherRows} teacher rows at offsets {so} and {to} does not fit {studentRows} and {teacherRows} rows.");
            }
            spans.AddRange(part.Spans.Select(x => x with { StudentStart = x.StudentStart + so, TeacherStart = x.TeacherStart + to }));
        }
        return new SpanAlignment(spans, studentRows, teacherRows);
    }

    /// <summary>
    /// The chain-rule merge of each span's rows, in log space, <c>[spans, V]</c>: for a span of rows r₀ … r_k with the
    /// tokens y that were actually there, log p_{r₀}(·) + Σ_{j=1..k} log p_{r_j}(y_{r_j}) — the probability of every
    /// continuation at the span's first token, times the probability of the rest of the span as it was. For the tokens
    /// that were there the product is exactly their joint probability; other first tokens get the same factor, a bias
    /// GOLD accepts. The rows are no longer normalised.
    /// </summary>
    /// <param name="logProbabilities">Row log-probabilities, <c>[rows, V]</c>.</param>
    /// <param name="tokens">The token at each row, <c>[rows]</c> int64.</param>
    /// <param name="student">Whether these are the student's rows (else the teacher's).</param>
    public Tensor MergeLogProbabilities(Tensor logProbabilities, Tensor tokens, bool student)
    {
        ArgumentNullException.ThrowIfNull(logProbabilities);
        ArgumentNullException.ThrowIfNull(tokens);
        int rows = student ? StudentRows : TeacherRows;
        string side = student ? "student" : "teacher";
        if (logProbabilities.dim() != 2 || logProbabilities.shape[0] != rows)
        {
            throw new ArgumentException($"The {side}'s log-probabilities must be [{rows}, V] (the alignment's {side} rows); got [{string.Join(", ", logProbabilities.shape)}].", nameof(logProbabilities));
        }
        if (tokens.dim() != 1 || tokens.shape[0] != rows)
        {
            throw new ArgumentException($"The {side}'s tokens must be [{rows}]; got [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        }
        using var scope = NewDisposeScope();
        Device device = logProbabilities.device;
        long[] first = Spans.Select(x => (long)(student ? x.StudentStart : x.TeacherStart)).ToArray();
        var restRows = new List<long>();
        var restSpans = new List<long>();
        for (int g = 0; g < Spans.Count; g++)
        {
            (int start, int count) = student ? (Spans[g].StudentStart, Spans[g].StudentCount) : (Spans[g].TeacherStart, Spans[g].TeacherCount);
            for (int r = start + 1; r < start + count; r++)
            {
                restRows.Add(r);
                restSpans.Add(g);
            }
        }
        Tensor merged = logProbabilities.index_select(0, tensor(first, device: device));
        if (restRows.Count > 0)
        {
            Tensor rowIndex = tensor(restRows.ToArray(), device: device);
            Tensor taken = logProbabilities.index_select(0, rowIndex).gather(1, tokens.to(device).index_select(0, rowIndex).unsqueeze(1)).squeeze(1);
            Tensor perSpan = zeros(Spans.Count, dtype: logProbabilities.dtype, device: device).index_add(0, tensor(restSpans.ToArray(), device: device), taken, 1);
            merged = merged + perSpan.unsqueeze(1);
        }
        return merged.MoveToOuterDisposeScope();
    }

    private static List<(int, int)> Offsets(IReadOnlyList<int> lengths, string name)
    {
        var offsets = new List<(int, int)>(lengths.Count);
        int at = 0;
        for (int i = 0; i < lengths.Count; i++)
        {
            if (lengths[i] < 0) throw new ArgumentException($"Token {i} has {lengths[i]} bytes; a token holds 0 or more.", name);
            offsets.Add((at, at + lengths[i]));
            at += lengths[i];
        }
        return offsets;
    }

    private static void RequireContiguous(IReadOnlyList<(int Start, int End)> offsets, string name)
    {
        for (int i = 0; i < offsets.Count; i++)
        {
            if (offsets[i].End < offsets[i].Start) throw new ArgumentException($"Token {i}'s byte range ({offsets[i].Start}, {offsets[i].End}) ends before it starts.", name);
            if (i > 0 && offsets[i].Start != offsets[i - 1].End && offsets[i].End > offsets[i].Start)
            {
                throw new ArgumentException($"Token {i} starts at byte {offsets[i].Start} but token {i - 1} ends at {offsets[i - 1].End}; the tokens must cover the text without gaps or overlaps.", name);
            }
        }
    }

    private static int FirstStart(IReadOnlyList<(int Start, int End)> offsets) => offsets.FirstOrDefault(o => o.End > o.Start).Start;

    private static int LastEnd(IReadOnlyList<(int Start, int End)> offsets) => offsets.LastOrDefault(o => o.End > o.Start).End;

    /// <summary>The first token at or after <paramref name="from"/> that covers at least one byte.</summary>
    private static int Skip(IReadOnlyList<(int Start, int End)> offsets, int from)
    {
        while (from < offsets.Count && offsets[from].End == offsets[from].Start) from++;
        return from;
    }
}
