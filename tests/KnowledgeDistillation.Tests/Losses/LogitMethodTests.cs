using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>
/// DKD, DIST and logit standardisation against double-precision references written from the papers' formulas
/// (plain loops over probabilities, sharing no code with the library), with masks, ignored labels, empty batches,
/// gradients by finite differences and bad input.
/// </summary>
public class LogitMethodTests
{
    private static double[] Probabilities(double[] logits, int row, int classes, double temperature) =>
        Reference.LogSoftmax(logits.AsSpan(row * classes, classes), temperature).Select(Math.Exp).ToArray();

    private static double[] Standardized(double[] logits, int classes)
    {
        var result = new double[logits.Length];
        for (int r = 0; r < logits.Length / classes; r++)
        {
            double mean = 0, square = 0;
            for (int c = 0; c < classes; c++) mean += logits[r * classes + c] / classes;
            for (int c = 0; c < classes; c++) square += Math.Pow(logits[r * classes + c] - mean, 2);
            double deviation = Math.Sqrt(square / (classes - 1));
            for (int c = 0; c < classes; c++) result[r * classes + c] = (logits[r * classes + c] - mean) / (deviation + 1e-7);
        }
        return result;
    }

    /// <summary>DKD from its definition: the binary [p_y, 1 − p_y] KL and the KL of p_c / (1 − p_y) over c ≠ y, times T².</summary>
    private static (double Tckd, double Nckd) DkdRow(double[] s, double[] t, int row, int classes, long label, double temperature)
    {
        double[] ps = Probabilities(s, row, classes, temperature), pt = Probabilities(t, row, classes, temperature);
        double tckd = pt[label] * Math.Log(pt[label] / ps[label]) + (1 - pt[label]) * Math.Log((1 - pt[label]) / (1 - ps[label]));
        double nckd = 0;
        for (int c = 0; c < classes; c++)
        {
            if (c == label) continue;
            double qt = pt[c] / (1 - pt[label]), qs = ps[c] / (1 - ps[label]);
            nckd += qt * Math.Log(qt / qs);
        }
        return (tckd * temperature * temperature, nckd * temperature * temperature);
    }

    private static double Dkd(double[] s, double[] t, long[] labels, int classes, double alpha, double beta, double temperature, bool[]? keep = null)
    {
        double total = 0;
        int count = 0;
        for (int r = 0; r < labels.Length; r++)
        {
            if (labels[r] == -100 || keep is { } k && !k[r]) continue;
            (double tckd, double nckd) = DkdRow(s, t, r, classes, labels[r], temperature);
            total += alpha * tckd + beta * nckd;
            count++;
        }
        return count == 0 ? 0 : total / count;
    }

    /// <summary>Pearson's ρ of two vectors, as DIST defines it (ε = 1e-8 added to the product of the norms).</summary>
    private static double Pearson(double[] a, double[] b)
    {
        double ma = a.Average(), mb = b.Average(), dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (a[i] - ma) * (b[i] - mb);
            na += (a[i] - ma) * (a[i] - ma);
            nb += (b[i] - mb) * (b[i] - mb);
        }
        return dot / (Math.Sqrt(na) * Math.Sqrt(nb) + 1e-8);
    }

    private static double Dist(double[] s, double[] t, int classes, double beta, double gamma, double temperature, bool[]? keep = null)
    {
        int rows = s.Length / classes;
        int[] kept = Enumerable.Range(0, rows).Where(r => keep is null || keep[r]).ToArray();
        if (kept.Length == 0) return 0;
        double[][] ps = kept.Select(r => Probabilities(s, r, classes, temperature)).ToArray();
        double[][] pt = kept.Select(r => Probabilities(t, r, classes, temperature)).ToArray();
        double inter = 1 - Enumerable.Range(0, kept.Length).Average(i => Pearson(ps[i], pt[i]));
        double intra = 1 - Enumerable.Range(0, classes).Average(c => Pearson(ps.Select(p => p[c]).ToArray(), pt.Select(p => p[c]).ToArray()));
        return temperature * temperature * (beta * inter + gamma * intra);
    }

    [Fact]
    public void DKD_takes_the_logit_family_settings_chunking_reduction_the_T_squared_switch_and_a_per_call_temperature()
    {
        const int rows = 9, classes = 5;
        double[] s = TestTensors.Normal(20, rows * classes, 2), t = TestTensors.Normal(21, rows * classes, 3);
        long[] labels = [3, 0, 4, -100, 2, 1, 1, -100, 0];
        bool[] keep = [true, true, true, true, false, true, true, true, true];
        Tensor student = TestTensors.Float64(s, rows, classes), teacher = TestTensors.Float64(t, rows, classes), y = tensor(labels), mask = tensor(keep);
        double mean = Dkd(s, t, labels, classes, 1, 8, 2.0, keep);
        int kept = Enumerable.Range(0, rows).Count(r => labels[r] != -100 && keep[r]);

        // Chunks of two rows take the chunked path (value and gradient computed per chunk) and give the same number.
        var chunked = new DecoupledKDLoss(1, 8, 2.0) { MaxChunkElements = 2 * classes };
        TestTensors.Scalar(chunked.forward(student, teacher, mask, y)).Should().BeApproximately(mean, 1e-10 * mean);
        var summed = new DecoupledKDLoss(1, 8, 2.0) { Reduction = RowReduction.Sum };
        TestTensors.Scalar(summed.forward(student, teacher, mask, y)).Should().BeApproximately(mean * kept, 1e-10 * mean * kept);
        var unscaled = new DecoupledKDLoss(1, 8, 2.0, scaleByTemperatureSquared: false);
        TestTensors.Scalar(unscaled.forward(student, teacher, mask, y)).Should().BeApproximately(mean / 4, 1e-10 * mean);
        var atFour = new DecoupledKDLoss(1, 8, 4.0);
        TestTensors.Scalar(atFour.forward(student, teacher, mask, y, temperature: 2.0)).Should().BeApproximately(mean, 1e-10 * mean);
        atFour.Temperature.Should().Be(4.0);
    }

    [Theory]
    [InlineData(1.0, 8.0, 4.0, false)]
    [InlineData(0.5, 2.0, 1.0, false)]
    [InlineData(1.0, 8.0, 2.0, true)]
    public void DKD_matches_the_target_and_non_target_KL_of_its_definition(double alpha, double beta, double temperature, bool masked)
    {
        const int rows = 6, classes = 7;
        double[] s = TestTensors.Normal(10, rows * classes, 2), t = TestTensors.Normal(11, rows * classes, 3);
        long[] labels = [3, 0, 6, -100, 2, 5];
        bool[]? keep = masked ? [true, false, true, true, true, true] : null;
        var loss = new DecoupledKDLoss(alpha, beta, temperature);
        Tensor value = loss.forward(TestTensors.Float32(s, rows, classes), TestTensors.Float32(t, rows, classes), keep is null ? null : tensor(keep), tensor(labels));
        TestTensors.Scalar(value).ShouldMatch(Dkd(s, t, labels, classes, alpha, beta, temperature, keep));

        // [B, S, C] rows are tokens: the same numbers as [N, C].
        Tensor sequence = loss.forward(TestTensors.Float32(s, 2, 3, classes), TestTensors.Float32(t, 2, 3, classes), keep is null ? null : tensor(keep, [2, 3]), tensor(labels, [2, 3]));
        TestTensors.Scalar(sequence).ShouldMatch(TestTensors.Scalar(value));
    }

    [Fact]
    public void Classic_KD_is_TCKD_plus_the_teacher_s_non_target_mass_times_NCKD()
    {
        // Zhao et al.'s decomposition: KL(p_t ‖ p_s) = TCKD + (1 − p_t,y) · NCKD, row by row.
        const int classes = 5;
        double[] s = TestTensors.Normal(12, classes, 2), t = TestTensors.Normal(13, classes, 2);
        Tensor S = TestTensors.Float64(s, 1, classes), T = TestTensors.Float64(t, 1, classes), y = tensor(new long[] { 2 });
        double tckd = TestTensors.Scalar(new DecoupledKDLoss(1, 0, 3.0).forward(S, T, y));
        double nckd = TestTensors.Scalar(new DecoupledKDLoss(0, 1, 3.0).forward(S, T, y));
        double kd = TestTensors.Scalar(new SoftTargetKLLoss(3.0).forward(S, T));
        double teacherRest = 1 - Probabilities(t, 0, classes, 3.0)[2];
        (tckd + teacherRest * nckd).Should().BeApproximately(kd, 1e-12);
    }

    [Fact]
    public void DKD_stays_finite_when_the_teacher_is_certain_and_drops_every_row_to_zero()
    {
        var loss = new DecoupledKDLoss();
        Tensor student = tensor(new float[] { 0, 1, 2, 0, 0, 0 }, [2, 3]).requires_grad_();
        Tensor certain = tensor(new float[] { 200, -200, -200, 0, 300, 0 }, [2, 3]);
        Tensor value = loss.forward(student, certain, tensor(new long[] { 0, 1 }));
        value.isfinite().item<bool>().Should().BeTrue();
        value.backward();
        student.grad!.isfinite().all().item<bool>().Should().BeTrue();

        Tensor none = loss.forward(student, certain, tensor(new long[] { -100, -100 }));
        TestTensors.Scalar(none).Should().Be(0);
    }

    [Theory]
    [InlineData(1.0, 1.0, 1.0, false)]
    [InlineData(2.0, 0.5, 4.0, true)]
    public void DIST_matches_the_inter_and_intra_class_Pearson_correlations(double beta, double gamma, double temperature, bool masked)
    {
        const int rows = 6, classes = 5;
        double[] s = TestTensors.Normal(14, rows * classes, 2), t = TestTensors.Normal(15, rows * classes, 3);
        bool[]? keep = masked ? [true, true, false, true, false, true] : null;
        var loss = new DistLoss(beta, gamma, temperature);
        Tensor value = loss.forward(TestTensors.Float32(s, rows, classes), TestTensors.Float32(t, rows, classes), keep is null ? null : tensor(keep));
        TestTensors.Scalar(value).ShouldMatch(Dist(s, t, classes, beta, gamma, temperature, keep));

        // Dropping rows by label is the same as by mask.
        if (keep is not null)
        {
            long[] labels = keep.Select(k => k ? 1L : -100L).ToArray();
            TestTensors.Scalar(loss.forward(TestTensors.Float32(s, rows, classes), TestTensors.Float32(t, rows, classes), null, tensor(labels))).ShouldMatch(TestTensors.Scalar(value));
        }
        TestTensors.Scalar(loss.forward(TestTensors.Float32(s, rows, classes), TestTensors.Float32(t, rows, classes), tensor(new bool[rows]))).Should().Be(0);
    }

    [Fact]
    public void DIST_is_zero_for_a_teacher_whose_predictions_are_a_positive_linear_function_of_the_student_s()
    {
        // ρ is invariant to scale and shift: identical probabilities give 1 − 1 = 0 in both terms, up to DIST's ε in ρ's denominator.
        double[] s = TestTensors.Normal(16, 4 * 6, 2);
        Tensor value = new DistLoss().forward(TestTensors.Float64(s, 4, 6), TestTensors.Float64(s, 4, 6));
        TestTensors.Scalar(value).Should().BeLessThan(1e-4);
        TestTensors.Scalar(value).ShouldMatch(Dist(s, s, 6, 1, 1, 1), 1e-9, 1e-12);
    }

    [Fact]
    public void Logit_standardisation_softens_standardised_logits_and_ignores_each_row_s_shift_and_scale()
    {
        const int rows = 4, classes = 6;
        double[] s = TestTensors.Normal(17, rows * classes, 2), t = TestTensors.Normal(18, rows * classes, 5);
        var loss = new SoftTargetKLLoss(2.0) { StandardizeLogits = true };
        Tensor value = loss.forward(TestTensors.Float32(s, rows, classes), TestTensors.Float32(t, rows, classes));
        TestTensors.Scalar(value).ShouldMatch(Reference.SoftTargetKl(Standardized(s, classes), Standardized(t, classes), classes, 2.0));

        // A teacher whose rows are shifted and scaled by positive factors gives the same loss.
        double[] moved = t.Select((v, i) => v * (1.5 + i / classes) + 3 * (i / classes) - 1).ToArray();
        TestTensors.Scalar(loss.forward(TestTensors.Float32(s, rows, classes), TestTensors.Float32(moved, rows, classes))).ShouldMatch(TestTensors.Scalar(value), 1e-4);

        // DKD and DIST standardise the same way.
        long[] labels = [1, 0, 5, 2];
        TestTensors.Scalar(new DecoupledKDLoss(1, 8, 2) { StandardizeLogits = true }.forward(TestTensors.Float32(s, rows, classes), TestTensors.Float32(t, rows, classes), tensor(labels)))
            .ShouldMatch(Dkd(Standardized(s, classes), Standardized(t, classes), labels, classes, 1, 8, 2));
        TestTensors.Scalar(new DistLoss(1, 1, 2) { StandardizeLogits = true }.forward(TestTensors.Float32(s, rows, classes), TestTensors.Float32(t, rows, classes)))
            .ShouldMatch(Dist(Standardized(s, classes), Standardized(t, classes), classes, 1, 1, 2));
    }

    private static void GradientShouldMatchFiniteDifferences(Func<Tensor, Tensor> loss, double[] input, params long[] shape) =>
        FiniteDifferences.GradientShouldMatch(loss, input, shape);

    private static readonly double[] Student = TestTensors.Normal(19, 2 * 3 * 5, 2);
    private static readonly Tensor Teacher = TestTensors.Float64(TestTensors.Normal(20, 2 * 3 * 5, 3), 2, 3, 5);
    private static readonly Tensor Targets = tensor(new long[] { 1, -100, 4, 0, 2, 3 }, [2, 3]);
    private static readonly Tensor Keep = tensor(new[] { true, true, false, true, true, true }, [2, 3]);

    [Fact]
    public void DKD_gradients_match_finite_differences() =>
        GradientShouldMatchFiniteDifferences(x => new DecoupledKDLoss(1, 8, 2).forward(x, Teacher, Keep, Targets), Student, 2, 3, 5);

    [Fact]
    public void DIST_with_one_kept_row_has_a_finite_gradient()
    {
        // One row: every class column is constant, so the intra-class correlations are 0/ε = 0 and must not make NaN gradients.
        Tensor x = zeros(3, 4, dtype: ScalarType.Float64).requires_grad_();
        Tensor value = new DistLoss().forward(x, Teacher[0].narrow(0, 0, 3).narrow(1, 0, 4), tensor(new[] { true, false, false }));
        value.backward();
        x.grad!.isfinite().all().item<bool>().Should().BeTrue();
        TestTensors.Scalar(value).Should().BeApproximately(1.0 + (1 - Pearson(Probabilities(new double[4], 0, 4, 1), Probabilities(TestTensors.Values(Teacher[0][0].narrow(0, 0, 4)), 0, 4, 1))), 1e-6);
    }

    [Fact]
    public void DIST_gradients_match_finite_differences() =>
        GradientShouldMatchFiniteDifferences(x => new DistLoss(1, 1, 2).forward(x, Teacher, Keep), Student, 2, 3, 5);

    [Fact]
    public void Standardised_soft_target_gradients_match_finite_differences() =>
        GradientShouldMatchFiniteDifferences(x => new SoftTargetKLLoss(2) { StandardizeLogits = true }.forward(x, Teacher, Keep, Targets), Student, 2, 3, 5);

    [Fact]
    public void Bad_input_names_the_argument_and_the_values()
    {
        Tensor s = zeros(3, 4), t = zeros(3, 4);
        FluentActions.Invoking(() => new DecoupledKDLoss().forward(s, t, tensor(new long[] { 0, 4, 1 }))).Should().Throw<ArgumentException>().WithParameterName("labels").WithMessage("*[0, 4)*found 4*");
        FluentActions.Invoking(() => new DecoupledKDLoss().forward(zeros(3, 1), zeros(3, 1), tensor(new long[] { 0, 0, 0 }))).Should().Throw<ArgumentException>().WithParameterName("studentLogits").WithMessage("*at least 2 classes*1*");
        FluentActions.Invoking(() => new DecoupledKDLoss().forward(s, zeros(3, 5), tensor(new long[] { 0, 0, 0 }))).Should().Throw<ArgumentException>().WithMessage("*4*5*");
        FluentActions.Invoking(() => new DecoupledKDLoss(alpha: -1)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("alpha");
        FluentActions.Invoking(() => new DecoupledKDLoss(temperature: 0)).Should().Throw<ArgumentOutOfRangeException>();
        FluentActions.Invoking(() => new DistLoss().forward(s, zeros(2, 4))).Should().Throw<ArgumentException>().WithMessage("*[3, 4]*[2, 4]*");
        FluentActions.Invoking(() => new DistLoss(gamma: double.NaN)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("gamma");
    }
}
