using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.CrossTokenizer;

/// <summary>One text tokenized by both sides, with the UTF-8 bytes each token holds (0 for a BOS or EOS token).</summary>
/// <param name="StudentIds">The student tokenizer's ids.</param>
/// <param name="StudentByteLengths">Bytes per student token.</param>
/// <param name="TeacherIds">The teacher tokenizer's ids.</param>
/// <param name="TeacherByteLengths">Bytes per teacher token.</param>
public sealed record CrossTokenizedText(int[] StudentIds, int[] StudentByteLengths, int[] TeacherIds, int[] TeacherByteLengths);

/// <summary>
/// A causal-LM batch of texts tokenized twice, for a teacher and a student with different tokenizers: each side's
/// inputs (the ids but the last) and next-token labels (−100 on padding), and the alignment of the two sides' label
/// rows through the text's bytes. The student reads <see cref="Student"/>, the teacher <see cref="Teacher"/> (wrap
/// them with <see cref="CrossTokenizerModels"/>); the batch's <c>Labels</c> are the student's, so hard-label terms work
/// unchanged, and the cross-tokenizer terms (<c>UniversalLogitDistillation</c>, <c>CrossTokenizerHybrid</c>) read the rest.
/// </summary>
/// <param name="Student">The student's inputs, <c>[B, S_s]</c>.</param>
/// <param name="Teacher">The teacher's inputs, <c>[B, S_t]</c>.</param>
/// <param name="StudentLabels">The student's next tokens, <c>[B, S_s]</c>, −100 where there is none.</param>
/// <param name="TeacherLabels">The teacher's next tokens, <c>[B, S_t]</c>, −100 where there is none.</param>
/// <param name="Alignment">Spans over the labelled rows of each side, in row-major order (sequence, then position).</param>
public sealed record CrossTokenizerBatch(TokenBatch Student, TokenBatch Teacher, Tensor StudentLabels, Tensor TeacherLabels, SpanAlignment Alignment)
{
    /// <summary>
    /// The flat indices (into <c>StudentLabels.reshape(-1)</c>) of the student's labelled rows, in order, when the batch
    /// knows them (<see cref="Create"/> sets them); null makes the terms find them from the labels, a device sync per step.
    /// </summary>
    public Tensor? StudentLabelRows { get; init; }

    /// <summary>The flat indices of the teacher's labelled rows, as <see cref="StudentLabelRows"/>.</summary>
    public Tensor? TeacherLabelRows { get; init; }

    /// <summary>
    /// Builds a batch from texts tokenized by both sides: ids are padded on the right, inputs are all ids but the last,
    /// labels all but the first, and the two sides' label rows are aligned through the bytes of each text.
    /// </summary>
    /// <exception cref="ArgumentException">A text has fewer than two tokens on a side, or its two sides do not hold the same bytes.</exception>
    public static DistillationBatch<CrossTokenizerBatch> Create(IReadOnlyList<CrossTokenizedText> texts, long studentPadding, long teacherPadding)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ArgumentException("A batch needs at least one text.", nameof(texts));
        for (int i = 0; i < texts.Count; i++)
        {
            CrossTokenizedText t = texts[i];
            if (t.StudentIds.Length < 2 || t.TeacherIds.Length < 2) throw new ArgumentException($"Text {i} has {t.StudentIds.Length} student and {t.TeacherIds.Length} teacher tokens; each side needs 2 or more (an input and a next token).", nameof(texts));
            if (t.StudentIds.Length != t.StudentByteLengths.Length || t.TeacherIds.Length != t.TeacherByteLengths.Length)
            {
                throw new ArgumentException($"Text {i}: every token needs its byte length ({t.StudentIds.Length} student ids, {t.StudentByteLengths.Length} lengths; {t.TeacherIds.Length} teacher ids, {t.TeacherByteLengths.Length} lengths).", nameof(texts));
            }
        }
        int studentWidth = texts.Max(t => t.StudentIds.Length) - 1, teacherWidth = texts.Max(t => t.TeacherIds.Length) - 1;
        int studentLabelled = 0, teacherLabelled = 0;
        var parts = new List<(SpanAlignment Part, int StudentRowOffset, int TeacherRowOffset)>();
        foreach (CrossTokenizedText t in texts)
        {
            SpanAlignment part = SpanAlignment.FromByteLengths(t.StudentByteLengths, t.TeacherByteLengths).ForNextTokenTargets();
            parts.Add((part, studentLabelled, teacherLabelled));
            studentLabelled += t.StudentIds.Length - 1;
            teacherLabelled += t.TeacherIds.Length - 1;
        }
        SpanAlignment alignment = SpanAlignment.Concatenate(parts, studentLabelled, teacherLabelled);
        (Tensor studentInputs, Tensor studentMask, Tensor studentLabels, Tensor studentRows) = Side(texts.Select(t => t.StudentIds).ToList(), studentWidth, studentPadding);
        (Tensor teacherInputs, Tensor teacherMask, Tensor teacherLabels, Tensor teacherRows) = Side(texts.Select(t => t.TeacherIds).ToList(), teacherWidth, teacherPadding);
        var batch = new CrossTokenizerBatch(new TokenBatch(studentInputs, studentMask), new TokenBatch(teacherInputs, teacherMask), studentLabels, teacherLabels, alignment)
        {
            StudentLabelRows = studentRows,
            TeacherLabelRows = teacherRows,
        };
        return new DistillationBatch<CrossTokenizerBatch>(batch, studentLabels);
    }

    private static (Tensor Inputs, Tensor Mask, Tensor Labels, Tensor LabelRows) Side(List<int[]> ids, int width, long padding)
    {
        var inputs = new long[ids.Count * width];
        var mask = new bool[ids.Count * width];
        var labels = new long[ids.Count * width];
        var rows = new List<long>(ids.Count * width);
        Array.Fill(inputs, padding);
        Array.Fill(labels, Labels.IgnoreIndex);
        for (int b = 0; b < ids.Count; b++)
        {
            for (int p = 0; p + 1 < ids[b].Length; p++)
            {
                inputs[b * width + p] = ids[b][p];
                mask[b * width + p] = true;
                labels[b * width + p] = ids[b][p + 1];
                rows.Add(b * width + p);
            }
        }
        return (tensor(inputs).reshape(ids.Count, width), tensor(mask).reshape(ids.Count, width), tensor(labels).reshape(ids.Count, width), tensor(rows.ToArray()));
    }
}

/// <summary>Runs a token model on its side of a <see cref="CrossTokenizerBatch"/>.</summary>
public static class CrossTokenizerModels
{
    /// <summary>The student: <paramref name="model"/> on <see cref="CrossTokenizerBatch.Student"/>.</summary>
    public static IModuleModel<CrossTokenizerBatch> Student(IModuleModel<TokenBatch> model) => new Side(model, b => b.Student);

    /// <summary>The teacher: <paramref name="model"/> on <see cref="CrossTokenizerBatch.Teacher"/>.</summary>
    public static IModuleModel<CrossTokenizerBatch> Teacher(IModuleModel<TokenBatch> model) => new Side(model, b => b.Teacher);

    /// <summary>A teacher that is not a module (an ONNX session, a remote teacher) on <see cref="CrossTokenizerBatch.Teacher"/>.</summary>
    public static IDistillationModel<CrossTokenizerBatch> Teacher(IDistillationModel<TokenBatch> model) => new NonModuleSide(model);

    private sealed class Side(IModuleModel<TokenBatch> model, Func<CrossTokenizerBatch, TokenBatch> pick) : IModuleModel<CrossTokenizerBatch>
    {
        public nn.Module Module => model.Module;

        public ModelOutputKinds Provides => model.Provides;

        public ModelOutput Run(CrossTokenizerBatch input, OutputRequest request) => model.Run(pick(input), request);
    }

    private sealed class NonModuleSide(IDistillationModel<TokenBatch> model) : IDistillationModel<CrossTokenizerBatch>
    {
        public ModelOutputKinds Provides => model.Provides;

        public ModelOutput Run(CrossTokenizerBatch input, OutputRequest request) => model.Run(input.Teacher, request);
    }
}
