using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Tests.Losses;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.CrossTokenizer;

/// <summary>ULD and the GOLD-style hybrid against double-precision references written from their definitions, and their gradients against finite differences.</summary>
public sealed class CrossTokenizerLossTests
{
    // Reference: softmax rows, sorted in decreasing order, the shorter padded with zeros, Σ |a − b|, mean over rows (Boizard et al. 2024, eq. 5).
    private static double UldReference(double[][] student, double[][] teacher)
    {
        double total = 0;
        for (int r = 0; r < student.Length; r++)
        {
            double[] a = student[r].OrderByDescending(x => x).ToArray(), b = teacher[r].OrderByDescending(x => x).ToArray();
            int n = Math.Max(a.Length, b.Length);
            for (int i = 0; i < n; i++) total += Math.Abs((i < a.Length ? a[i] : 0) - (i < b.Length ? b[i] : 0));
        }
        return total / student.Length;
    }

    private static double[][] Softmax(double[] logits, int rows, int width, double temperature)
    {
        var result = new double[rows][];
        for (int r = 0; r < rows; r++) result[r] = Reference.LogSoftmax(logits.AsSpan(r * width, width), temperature).Select(Math.Exp).ToArray();
        return result;
    }

    // The chain-rule merge of a span: p_first(·) × Π p_j(y_j) over the span's other rows.
    private static double[][] MergeReference(double[][] p, long[] tokens, IEnumerable<(int Start, int Count)> spans) =>
        spans.Select(s =>
        {
            double factor = 1;
            for (int j = s.Start + 1; j < s.Start + s.Count; j++) factor *= p[j][tokens[j]];
            return p[s.Start].Select(x => x * factor).ToArray();
        }).ToArray();

    [Theory]
    [InlineData(7, 5, 1.0)]
    [InlineData(5, 9, 2.0)]
    [InlineData(6, 6, 0.5)]
    public void ULD_equals_the_sorted_L1_distance_whatever_the_widths(int studentWidth, int teacherWidth, double temperature)
    {
        const int rows = 4;
        double[] s = TestTensors.Normal(1, rows * studentWidth, 2), t = TestTensors.Normal(2, rows * teacherWidth, 2);
        double expected = UldReference(Softmax(s, rows, studentWidth, temperature), Softmax(t, rows, teacherWidth, temperature));
        using var scope = NewDisposeScope();
        Tensor actual = new UniversalLogitDistillationLoss().forward(
            TestTensors.Float64(s, rows, studentWidth).div(temperature).log_softmax(1), TestTensors.Float64(t, rows, teacherWidth).div(temperature).log_softmax(1));
        TestTensors.Scalar(actual).ShouldMatch(expected, 1e-12, 1e-12);
        // In float32 too, with the wide side cut to its top k.
        Tensor single = new UniversalLogitDistillationLoss().forward(
            TestTensors.Float32(s, rows, studentWidth).div(temperature).log_softmax(1), TestTensors.Float32(t, rows, teacherWidth).div(temperature).log_softmax(1));
        TestTensors.Scalar(single).ShouldMatch(expected, 1e-5, 1e-6);
    }

    [Fact]
    public void ULD_gradient_matches_finite_differences_with_the_wide_side_cut_to_top_k()
    {
        const int rows = 3, studentWidth = 9, teacherWidth = 4;
        double[] t = TestTensors.Normal(4, rows * teacherWidth, 2);
        FiniteDifferences.GradientShouldMatch(x =>
            new UniversalLogitDistillationLoss().forward(x.log_softmax(1), TestTensors.Float64(t, rows, teacherWidth).log_softmax(1)),
            TestTensors.Normal(3, rows * studentWidth, 2), [rows, studentWidth]);
    }

    [Fact]
    public void Merging_multiplies_the_first_rows_distribution_by_the_rest_of_the_span_as_it_was()
    {
        // Student rows 0..4, teacher rows 0..2; spans: student [0,1] with teacher [0]; student [2] with teacher [1,2]; student rows 3, 4 unaligned.
        SpanAlignment alignment = SpanAlignment.FromByteLengths([1, 2, 3], [3, 1, 2]);
        alignment.Spans.Should().Equal(new AlignedSpan(0, 2, 0, 1), new AlignedSpan(2, 1, 1, 2));
        const int width = 5;
        double[] logits = TestTensors.Normal(5, 3 * width);
        long[] tokens = [4, 1, 3];
        double[][] p = Softmax(logits, 3, width, 1.0);
        double[][] expected = MergeReference(p, tokens, alignment.Spans.Select(x => (x.StudentStart, x.StudentCount)));
        using var scope = NewDisposeScope();
        Tensor merged = alignment.MergeLogProbabilities(TestTensors.Float64(logits, 3, width).log_softmax(1), tensor(tokens), student: true).exp();
        double[] values = TestTensors.Values(merged);
        for (int g = 0; g < 2; g++)
        {
            for (int v = 0; v < width; v++) values[g * width + v].ShouldMatch(expected[g][v], 1e-12, 1e-15);
        }
        // The first span's entry for the token that was there is the joint probability of the two tokens.
        values[tokens[0]].ShouldMatch(p[0][tokens[0]] * p[1][tokens[1]], 1e-12, 1e-15);
    }

    [Theory]
    [InlineData(0.5, null, null)]
    [InlineData(0.0, 0.7, 0.3)]
    [InlineData(1.0, 1.0, 2.0)]
    public void The_hybrid_compares_shared_tokens_directly_and_the_rest_sorted(double beta, double? matchedWeight, double? unmatchedWeight)
    {
        // Student vocabulary: a b c ab abc; teacher: a b c d (bytes). Shared: a b c.
        TokenByteStrings student = Vocabulary("a", "b", "c", "ab", "abc"), teacher = Vocabulary("a", "b", "c", "d");
        VocabularyMatch match = VocabularyMatch.Between(student, teacher);
        match.StudentIds.Should().Equal(0, 1, 2);
        match.TeacherIds.Should().Equal(0, 1, 2);
        const int rows = 3;
        double[] s = TestTensors.Normal(6, rows * 5, 2), t = TestTensors.Normal(7, rows * 4, 2);
        double[][] ps = Softmax(s, rows, 5, 1.0), pt = Softmax(t, rows, 4, 1.0);
        double wm = matchedWeight ?? 3.0 / 4, wu = unmatchedWeight ?? 1 - wm;
        double jsd = 0;
        for (int r = 0; r < rows; r++)
        {
            for (int v = 0; v < 3; v++)
            {
                double a = ps[r][v], b = pt[r][v], m = beta * b + (1 - beta) * a;
                jsd += beta == 0 ? b * Math.Log(b / a) : beta == 1 ? a * Math.Log(a / b) : beta * b * Math.Log(b / m) + (1 - beta) * a * Math.Log(a / m);
            }
        }
        double uld = UldReference(ps.Select(r => r[3..]).ToArray(), pt.Select(r => r[3..]).ToArray());
        double expected = wm * jsd / rows + wu * uld;
        using var scope = NewDisposeScope();
        var loss = new CrossTokenizerHybridLoss(match.StudentIds, match.TeacherIds, 5, 4, beta, matchedWeight, unmatchedWeight);
        loss.MatchedWeight.Should().Be(wm);
        TestTensors.Scalar(loss.forward(TestTensors.Float64(s, rows, 5).log_softmax(1), TestTensors.Float64(t, rows, 4).log_softmax(1))).ShouldMatch(expected, 1e-12, 1e-12);
        FiniteDifferences.GradientShouldMatch(x => loss.forward(x.log_softmax(1), TestTensors.Float64(t, rows, 4).log_softmax(1)), s, [rows, 5]);
    }

    [Fact]
    public void The_merged_pipeline_gradient_matches_finite_differences()
    {
        SpanAlignment alignment = SpanAlignment.FromByteLengths([2, 1, 3, 1], [1, 1, 1, 3, 1]);
        const int studentWidth = 6, teacherWidth = 4;
        long[] studentTokens = [5, 0, 2, 3], teacherTokens = [1, 3, 0, 2, 1];
        double[] t = TestTensors.Normal(8, 5 * teacherWidth, 2);
        FiniteDifferences.GradientShouldMatch(x =>
        {
            Tensor student = alignment.MergeLogProbabilities(x.log_softmax(1), tensor(studentTokens), student: true);
            Tensor teacher = alignment.MergeLogProbabilities(TestTensors.Float64(t, 5, teacherWidth).log_softmax(1), tensor(teacherTokens), student: false);
            return new UniversalLogitDistillationLoss().forward(student, teacher);
        }, TestTensors.Normal(9, 4 * studentWidth, 2), [4, studentWidth]);
    }

    [Fact]
    public void Shapes_that_do_not_fit_are_refused_naming_them()
    {
        using var scope = NewDisposeScope();
        ((Action)(() => new UniversalLogitDistillationLoss().forward(zeros(3, 4), zeros(2, 4)))).Should().Throw<ArgumentException>().WithMessage("*same rows*[3, 4]*[2, 4]*");
        var match = VocabularyMatch.Between(Vocabulary("a", "b"), Vocabulary("a", "c"));
        ((Action)(() => new CrossTokenizerHybridLoss(match.StudentIds, match.TeacherIds, 2, 2).forward(zeros(2, 3), zeros(2, 2)))).Should().Throw<ArgumentException>().WithMessage("*made for 2 student and 2 teacher tokens; the rows have 3 and 2*");
        ((Action)(() => new CrossTokenizerHybridLoss(match.StudentIds, match.TeacherIds, 2, 2, beta: 1.5))).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("beta");
        ((Action)(() => new CrossTokenizerHybridLoss([0, 5], [0, 1], 2, 2))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*Shared token id 5 is outside the vocabulary of 2*");
        ((Action)(() => VocabularyMatch.Between(Vocabulary("a"), Vocabulary("b")))).Should().Throw<ArgumentException>().WithMessage("*share no token*");
        SpanAlignment alignment = SpanAlignment.FromByteLengths([1, 1], [2]);
        ((Action)(() => alignment.MergeLogProbabilities(zeros(3, 4), zeros(3, ScalarType.Int64), student: true))).Should().Throw<ArgumentException>().WithMessage("*must be [2, V]*got [3, 4]*");
    }

    internal static TokenByteStrings Vocabulary(params string[] tokens) =>
        TokenByteStrings.FromTiktokenRanks(new StringReader(string.Join("\n", tokens.Select((t, i) => $"{Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(t))} {i}"))), tokens.Length);
}
