using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>SoftTargetKLLoss, ReverseKLLoss and GeneralizedJensenShannonLoss against double-precision loops.</summary>
public class DivergenceLossTests
{
    public static TheoryData<long[], double, bool> Cases() => new()
    {
        { [6, 5], 1.0, false },
        { [6, 5], 2.0, true },
        { [8, 11], 4.0, false },
        { [2, 7, 13], 2.0, true },
        { [3, 4, 50], 20.0, true },
    };

    private static (double[] S, double[] T, Tensor Student, Tensor Teacher, int Classes, int Rows) Inputs(long[] shape, int seed, bool float64 = false)
    {
        int count = (int)shape.Aggregate(1L, (a, b) => a * b);
        double[] s = TestTensors.Normal(seed, count, 2.0), t = TestTensors.Normal(seed + 1, count, 3.0);
        Func<double[], long[], Tensor> make = float64 ? TestTensors.Float64 : TestTensors.Float32;
        return (s, t, make(s, shape), make(t, shape), (int)shape[^1], count / (int)shape[^1]);
    }

    /// <summary>
    /// float32 inputs: 1e-5 relative, plus an absolute floor for high temperatures. Rounding each row's log-sum-exp
    /// to float32 shifts that row's divergence by about 1e-7·|log p| ≈ 1e-6 before the T² factor multiplies it, and at
    /// T = 20 the divergences themselves are ~1e-4, so only float64 inputs can show agreement to 1e-5 there.
    /// </summary>
    private static void ShouldMatchInFloat32(double actual, double expected, double temperature) =>
        actual.ShouldMatch(expected, relative: 1e-5, absolute: 1e-6 * Math.Max(1, temperature * temperature));

    /// <summary>float64 inputs keep float64 math: agreement to 1e-10 proves the formula itself.</summary>
    private static void ShouldMatchInFloat64(double actual, double expected) => actual.ShouldMatch(expected, relative: 1e-10, absolute: 1e-12);

    private static bool[]? KeepFor(bool masked, int rows, int seed) => masked ? TestTensors.RandomKeep(seed, rows) : null;

    private static Tensor? MaskTensor(bool[]? keep, long[] shape) => keep is null ? null : TestTensors.Mask(keep, shape[..^1]);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Soft_target_KL_matches_the_reference(long[] shape, double temperature, bool masked)
    {
        using var scope = NewDisposeScope();
        var (s, t, student, teacher, classes, rows) = Inputs(shape, 10);
        var (_, _, student64, teacher64, _, _) = Inputs(shape, 10, float64: true);
        bool[]? keep = KeepFor(masked, rows, 11);

        foreach (bool scale in new[] { true, false })
        {
            using var loss = new SoftTargetKLLoss(temperature, scaleByTemperatureSquared: scale);
            double expected = Reference.SoftTargetKl(s, t, classes, temperature, scale, keep);
            ShouldMatchInFloat32(TestTensors.Scalar(loss.forward(student, teacher, MaskTensor(keep, shape))), expected, temperature);
            ShouldMatchInFloat64(TestTensors.Scalar(loss.forward(student64, teacher64, MaskTensor(keep, shape))), expected);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Reverse_KL_matches_the_reference(long[] shape, double temperature, bool masked)
    {
        using var scope = NewDisposeScope();
        var (s, t, student, teacher, classes, rows) = Inputs(shape, 20);
        var (_, _, student64, teacher64, _, _) = Inputs(shape, 20, float64: true);
        bool[]? keep = KeepFor(masked, rows, 21);
        using var loss = new ReverseKLLoss(temperature);

        double expected = Reference.ReverseKl(s, t, classes, temperature, true, keep);

        ShouldMatchInFloat32(TestTensors.Scalar(loss.forward(student, teacher, MaskTensor(keep, shape))), expected, temperature);
        ShouldMatchInFloat64(TestTensors.Scalar(loss.forward(student64, teacher64, MaskTensor(keep, shape))), expected);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Generalized_JSD_matches_the_reference_for_several_betas(long[] shape, double temperature, bool masked)
    {
        using var scope = NewDisposeScope();
        var (s, t, student, teacher, classes, rows) = Inputs(shape, 30);
        var (_, _, student64, teacher64, _, _) = Inputs(shape, 30, float64: true);
        bool[]? keep = KeepFor(masked, rows, 31);

        foreach (double beta in new[] { 0.0, 0.1, 0.5, 0.9, 1.0 })
        foreach (bool normalize in new[] { false, true })
        {
            using var loss = new GeneralizedJensenShannonLoss(beta, temperature, normalize);
            double expected = Reference.GeneralizedJsd(s, t, classes, beta, temperature, normalize, true, keep);
            // Normalising divides by β(1 − β), which magnifies float32 rounding by up to 11x at β = 0.1.
            double magnify = normalize && beta is > 0 and < 1 ? 1 / (beta * (1 - beta)) : 1;
            TestTensors.Scalar(loss.forward(student, teacher, MaskTensor(keep, shape)))
                .ShouldMatch(expected, relative: 1e-5, absolute: 1e-6 * Math.Max(1, temperature * temperature) * magnify);
            ShouldMatchInFloat64(TestTensors.Scalar(loss.forward(student64, teacher64, MaskTensor(keep, shape))), expected);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Total_variation_matches_the_reference(long[] shape, double temperature, bool masked)
    {
        using var scope = NewDisposeScope();
        var (s, t, student, teacher, classes, rows) = Inputs(shape, 40);
        var (_, _, student64, teacher64, _, _) = Inputs(shape, 40, float64: true);
        bool[]? keep = KeepFor(masked, rows, 41);
        using var loss = new TotalVariationLoss(temperature);

        double expected = Reference.TotalVariation(s, t, classes, temperature, true, keep);

        ShouldMatchInFloat32(TestTensors.Scalar(loss.forward(student, teacher, MaskTensor(keep, shape))), expected, temperature);
        ShouldMatchInFloat64(TestTensors.Scalar(loss.forward(student64, teacher64, MaskTensor(keep, shape))), expected);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Skew_KL_and_skew_reverse_KL_match_the_reference_for_several_alphas(long[] shape, double temperature, bool masked)
    {
        using var scope = NewDisposeScope();
        var (s, t, student, teacher, classes, rows) = Inputs(shape, 50);
        var (_, _, student64, teacher64, _, _) = Inputs(shape, 50, float64: true);
        bool[]? keep = KeepFor(masked, rows, 51);

        foreach (double alpha in new[] { 0.0, 0.1, 0.5, 0.9 })
        foreach (bool reverse in new[] { false, true })
        {
            using var loss = new SkewKLLoss(alpha, reverse, temperature);
            double expected = Reference.SkewKl(s, t, classes, alpha, reverse, temperature, true, keep);
            ShouldMatchInFloat32(TestTensors.Scalar(loss.forward(student, teacher, MaskTensor(keep, shape))), expected, temperature);
            ShouldMatchInFloat64(TestTensors.Scalar(loss.forward(student64, teacher64, MaskTensor(keep, shape))), expected);
        }
    }

    [Fact]
    public void Skew_KL_at_alpha_0_is_forward_or_reverse_KL_and_is_bounded_by_minus_log_alpha()
    {
        using var scope = NewDisposeScope();
        var (_, _, student, teacher, _, _) = Inputs([4, 9], 60, float64: true);
        TestTensors.Scalar(new SkewKLLoss(0).forward(student, teacher)).Should().Be(TestTensors.Scalar(new SoftTargetKLLoss(1).forward(student, teacher)));
        TestTensors.Scalar(new SkewKLLoss(0, reverse: true).forward(student, teacher)).Should().Be(TestTensors.Scalar(new ReverseKLLoss(1).forward(student, teacher)));
        // A student that gives the teacher's favourite class almost nothing: KL explodes, the 0.1-skew KL stays below −log 0.1.
        Tensor confident = tensor(new double[] { 30, 0, 0 }).unsqueeze(0), opposite = tensor(new double[] { -30, 0, 0 }).unsqueeze(0);
        TestTensors.Scalar(new SoftTargetKLLoss(1).forward(opposite, confident)).Should().BeGreaterThan(30);
        TestTensors.Scalar(new SkewKLLoss(0.1).forward(opposite, confident)).Should().BeLessThan(-Math.Log(0.1));
        ((Action)(() => _ = new SkewKLLoss(1.0))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("alpha must lie in [0, 1); got 1.*");
    }

    [Fact]
    public void Labels_equal_to_the_ignore_index_drop_rows_like_a_mask_and_combine_with_it()
    {
        using var scope = NewDisposeScope();
        var (s, t, student, teacher, classes, _) = Inputs([2, 4, 9], 40);
        long[] labels = [3, -100, 5, 0, -100, -100, 8, 1];
        bool[] mask = [true, true, true, false, true, true, true, true];
        bool[] keep = labels.Select((l, i) => l != -100 && mask[i]).ToArray();
        using var loss = new SoftTargetKLLoss(3.0);

        double actual = TestTensors.Scalar(loss.forward(student, teacher, TestTensors.Mask(mask, 2, 4), tensor(labels, [2, 4])));

        actual.ShouldMatch(Reference.SoftTargetKl(s, t, classes, 3.0, true, keep));
    }

    [Fact]
    public void An_integer_attention_mask_works_like_a_bool_mask()
    {
        using var scope = NewDisposeScope();
        var (s, t, student, teacher, classes, _) = Inputs([2, 3, 6], 45);
        bool[] keep = [true, true, false, true, false, false];
        using var loss = new SoftTargetKLLoss();

        double actual = TestTensors.Scalar(loss.forward(student, teacher, tensor(keep.Select(k => k ? 1L : 0L).ToArray(), [2, 3])));

        actual.ShouldMatch(Reference.SoftTargetKl(s, t, classes, 2.0, true, keep));
    }

    [Fact]
    public void Jsd_endpoints_are_exactly_forward_and_reverse_KL_and_the_normalized_form_is_continuous()
    {
        using var scope = NewDisposeScope();
        var (_, _, student, teacher, _, _) = Inputs([5, 8], 50);
        double forward = TestTensors.Scalar(new SoftTargetKLLoss(1.5).forward(student, teacher));
        double reverse = TestTensors.Scalar(new ReverseKLLoss(1.5).forward(student, teacher));

        TestTensors.Scalar(new GeneralizedJensenShannonLoss(0, 1.5).forward(student, teacher)).Should().Be(forward);
        TestTensors.Scalar(new GeneralizedJensenShannonLoss(1, 1.5).forward(student, teacher)).Should().Be(reverse);
        TestTensors.Scalar(new GeneralizedJensenShannonLoss(1e-3, 1.5, normalize: true).forward(student, teacher)).ShouldMatch(forward, relative: 1e-2);
        TestTensors.Scalar(new GeneralizedJensenShannonLoss(1 - 1e-3, 1.5, normalize: true).forward(student, teacher)).ShouldMatch(reverse, relative: 1e-2);
    }

    [Fact]
    public void Every_divergence_is_zero_for_identical_distributions_and_never_negative()
    {
        using var scope = NewDisposeScope();
        var (_, _, student, teacher, _, _) = Inputs([2, 6, 17], 60);
        LogitDistillationLoss[] losses =
        [
            new SoftTargetKLLoss(2.0), new ReverseKLLoss(2.0),
            new GeneralizedJensenShannonLoss(0.3, 2.0), new GeneralizedJensenShannonLoss(0.7, 2.0, normalize: true),
        ];

        foreach (LogitDistillationLoss loss in losses)
        {
            TestTensors.Scalar(loss.forward(student, student.clone())).Should().BeApproximately(0, 1e-6, loss.GetName());
            for (int seed = 0; seed < 5; seed++)
            {
                var (_, _, s, t, _, _) = Inputs([4, 9], 100 + seed);
                TestTensors.Scalar(loss.forward(s, t)).Should().BeGreaterThanOrEqualTo(0, loss.GetName());
            }
        }
    }

    [Fact]
    public void Minus_infinity_logits_for_masked_vocabulary_entries_give_finite_values_and_gradients()
    {
        using var scope = NewDisposeScope();
        var (s, t, _, _, classes, _) = Inputs([4, 6], 70);
        foreach (int row in new[] { 0, 1, 2, 3 })
        {
            s[row * classes + 5] = double.NegativeInfinity; // the same padded vocabulary entry in both models
            t[row * classes + 5] = double.NegativeInfinity;
        }
        t[2] = double.NegativeInfinity; // the teacher alone rules out class 2 of row 0

        var cases = new (LogitDistillationLoss Loss, double Expected)[]
        {
            (new SoftTargetKLLoss(2.0), Reference.SoftTargetKl(s, t, classes, 2.0)),
            (new GeneralizedJensenShannonLoss(0.5, 2.0), Reference.GeneralizedJsd(s, t, classes, 0.5, 2.0)),
        };
        foreach (var (loss, expected) in cases)
        {
            Tensor student = TestTensors.Float32(s, 4, 6).requires_grad_();
            Tensor value = loss.forward(student, TestTensors.Float32(t, 4, 6));
            value.backward();

            double.IsFinite(expected).Should().BeTrue();
            TestTensors.Scalar(value).ShouldMatch(expected);
            TestTensors.Values(student.grad!).Should().OnlyContain(g => double.IsFinite(g), loss.GetName());
        }
    }

    [Fact]
    public void With_every_row_masked_the_loss_is_zero_with_zero_gradient()
    {
        using var scope = NewDisposeScope();
        var (_, _, student, teacher, _, _) = Inputs([2, 3, 5], 80);
        student.requires_grad_();
        Tensor none = zeros([2, 3], dtype: ScalarType.Bool);
        LogitDistillationLoss[] losses = [new SoftTargetKLLoss(), new ReverseKLLoss(), new GeneralizedJensenShannonLoss()];

        foreach (LogitDistillationLoss loss in losses)
        {
            student.grad?.zero_();
            Tensor value = loss.forward(student, teacher, none);
            value.backward();
            TestTensors.Scalar(value).Should().Be(0);
            TestTensors.Values(student.grad!).Should().OnlyContain(g => g == 0);
        }
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void Half_precision_inputs_are_computed_in_float32(ScalarType type)
    {
        using var scope = NewDisposeScope();
        var (_, _, student, teacher, classes, _) = Inputs([6, 10], 90);
        Tensor lowStudent = student.to(type), lowTeacher = teacher.to(type);
        double[] s = TestTensors.Values(lowStudent), t = TestTensors.Values(lowTeacher);

        Tensor value = new SoftTargetKLLoss(2.0).forward(lowStudent, lowTeacher);

        value.dtype.Should().Be(ScalarType.Float32);
        TestTensors.Scalar(value).ShouldMatch(Reference.SoftTargetKl(s, t, classes, 2.0));
    }

    [Fact]
    public void The_teacher_never_receives_gradient()
    {
        using var scope = NewDisposeScope();
        var (_, _, student, teacher, _, _) = Inputs([3, 4], 95);
        student.requires_grad_();
        teacher.requires_grad_();

        new GeneralizedJensenShannonLoss(0.5).forward(student, teacher).backward();

        student.grad.Should().NotBeNull();
        teacher.grad.Should().BeNull();
    }

    [Fact]
    public void A_call_gives_its_own_temperature_and_beta_without_changing_the_loss()
    {
        Tensor student = TestTensors.Float64([0.3, -1.2, 2.0, 0.7, 0.1, -0.4], 2, 3), teacher = TestTensors.Float64([1.1, 0.2, -0.5, -0.3, 0.9, 0.4], 2, 3);
        var loss = new GeneralizedJensenShannonLoss(0.5, 1.0);

        double perCall = TestTensors.Scalar(loss.forward(student, teacher, null, null, temperature: 4, mixture: 0.25));

        // The reference: the generalised JSD of each row in double precision at T = 4, β = 0.25, averaged, times T².
        double expected = 0;
        for (int row = 0; row < 2; row++)
        {
            double[] s = Softmax([.. Enumerable.Range(0, 3).Select(c => TestTensors.Scalar(student[row, c]) / 4)]);
            double[] t = Softmax([.. Enumerable.Range(0, 3).Select(c => TestTensors.Scalar(teacher[row, c]) / 4)]);
            double[] m = [.. t.Zip(s, (a, b) => 0.25 * a + 0.75 * b)];
            expected += 0.25 * Enumerable.Range(0, 3).Sum(c => t[c] * Math.Log(t[c] / m[c])) + 0.75 * Enumerable.Range(0, 3).Sum(c => s[c] * Math.Log(s[c] / m[c]));
        }
        perCall.Should().BeApproximately(16 * expected / 2, 1e-12);
        loss.Temperature.Should().Be(1.0, "the call's temperature is not kept");
        loss.Beta.Should().Be(0.5, "the call's β is not kept");

        ((Action)(() => loss.forward(student, teacher, null, null, temperature: 0))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*temperature must be a finite number greater than 0; got 0*");
        ((Action)(() => loss.forward(student, teacher, null, null, 1.0, mixture: 1.5))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*mixture must lie in [0, 1]; got 1.5*");
        ((Action)(() => loss.forward(student, teacher, null, null, 1.0, mixture: double.NaN))).Should().Throw<ArgumentOutOfRangeException>();
        ((Action)(() => new SoftTargetKLLoss().forward(student, teacher, null, null, 1.0, mixture: 0.5))).Should().Throw<ArgumentException>().WithParameterName("mixture");
        ((Action)(() => _ = new GeneralizedJensenShannonLoss(1.5))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("beta must lie in [0, 1]; got 1.5*");
    }

    private static double[] Softmax(double[] z)
    {
        double max = z.Max();
        double[] e = [.. z.Select(v => Math.Exp(v - max))];
        return [.. e.Select(v => v / e.Sum())];
    }
}
