using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>
/// RKD, PKT, similarity-preserving KD, attention transfer and FitNets hints against double-precision loops written
/// from the papers' formulas (as RepDistiller states them), with masks, too few examples, gradients by finite
/// differences and bad input.
/// </summary>
public class RepresentationMethodTests
{
    private static double[] Row(double[] f, int i, int d) => f.AsSpan(i * d, d).ToArray();

    private static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    private static double Huber(double x) => Math.Abs(x) < 1 ? 0.5 * x * x : Math.Abs(x) - 0.5;

    private static int[] Kept(int n, bool[]? keep) => Enumerable.Range(0, n).Where(i => keep is null || keep[i]).ToArray();

    /// <summary>RKD from Park et al.: distances over the mean off-diagonal distance, angles at each vertex, smooth L1, means over K² and K³.</summary>
    private static double Rkd(double[] s, int ds, double[] t, int dt, int n, double wd, double wa, bool[]? keep = null)
    {
        int[] k = Kept(n, keep);
        if (k.Length < 2) return 0;
        double[,] Distances(double[] f, int d)
        {
            var r = new double[k.Length, k.Length];
            double sum = 0;
            for (int a = 0; a < k.Length; a++)
            for (int b = 0; b < k.Length; b++)
            {
                if (a == b) continue;
                double[] x = Row(f, k[a], d), y = Row(f, k[b], d);
                r[a, b] = Math.Sqrt(Math.Max(x.Zip(y, (u, v) => (u - v) * (u - v)).Sum(), 1e-12));
                sum += r[a, b];
            }
            double mean = sum / (k.Length * (k.Length - 1));
            for (int a = 0; a < k.Length; a++) for (int b = 0; b < k.Length; b++) r[a, b] /= mean;
            return r;
        }
        double Angle(double[] f, int d, int i, int j, int l)
        {
            double[] vi = Row(f, i, d), u = Row(f, j, d).Zip(vi, (x, y) => x - y).ToArray(), v = Row(f, l, d).Zip(vi, (x, y) => x - y).ToArray();
            double nu = Math.Max(Math.Sqrt(Dot(u, u)), 1e-12), nv = Math.Max(Math.Sqrt(Dot(v, v)), 1e-12);
            return Dot(u, v) / (nu * nv);
        }
        double[,] sd = Distances(s, ds), td = Distances(t, dt);
        double distance = 0, angle = 0;
        for (int a = 0; a < k.Length; a++)
        for (int b = 0; b < k.Length; b++)
        {
            distance += Huber(sd[a, b] - td[a, b]);
            for (int c = 0; c < k.Length; c++) angle += Huber(Angle(s, ds, k[a], k[b], k[c]) - Angle(t, dt, k[a], k[b], k[c]));
        }
        return wd * distance / Math.Pow(k.Length, 2) + wa * angle / Math.Pow(k.Length, 3);
    }

    private static double Pkt(double[] s, int ds, double[] t, int dt, int n, bool[]? keep = null)
    {
        int[] k = Kept(n, keep);
        if (k.Length < 2) return 0;
        double[,] Conditional(double[] f, int d)
        {
            double[][] unit = k.Select(i => { double[] x = Row(f, i, d); double norm = Math.Sqrt(Dot(x, x)); return x.Select(v => v / (norm + 1e-7)).ToArray(); }).ToArray();
            var p = new double[k.Length, k.Length];
            for (int a = 0; a < k.Length; a++)
            {
                double total = 0;
                for (int b = 0; b < k.Length; b++) total += p[a, b] = (Dot(unit[a], unit[b]) + 1) / 2;
                for (int b = 0; b < k.Length; b++) p[a, b] /= total;
            }
            return p;
        }
        double[,] ps = Conditional(s, ds), pt = Conditional(t, dt);
        double sum = 0;
        for (int a = 0; a < k.Length; a++) for (int b = 0; b < k.Length; b++) sum += pt[a, b] * Math.Log((pt[a, b] + 1e-7) / (ps[a, b] + 1e-7));
        return sum / (k.Length * k.Length);
    }

    private static double Sp(double[] s, int ds, double[] t, int dt, int n, bool[]? keep = null)
    {
        int[] k = Kept(n, keep);
        if (k.Length < 2) return 0;
        double[,] Gram(double[] f, int d)
        {
            var g = new double[k.Length, k.Length];
            for (int a = 0; a < k.Length; a++)
            {
                double norm = 0;
                for (int b = 0; b < k.Length; b++) { g[a, b] = Dot(Row(f, k[a], d), Row(f, k[b], d)); norm += g[a, b] * g[a, b]; }
                for (int b = 0; b < k.Length; b++) g[a, b] /= Math.Max(Math.Sqrt(norm), 1e-12);
            }
            return g;
        }
        double[,] gs = Gram(s, ds), gt = Gram(t, dt);
        double sum = 0;
        for (int a = 0; a < k.Length; a++) for (int b = 0; b < k.Length; b++) sum += Math.Pow(gt[a, b] - gs[a, b], 2);
        return sum / (k.Length * k.Length);
    }

    /// <summary>AT with maps of equal spatial size: Q = channel mean of A², unit L2 norm; mean squared difference over positions, then over kept examples.</summary>
    private static double At(double[] s, int cs, double[] t, int ct, int n, int hw, bool[]? keep = null)
    {
        double[] Q(double[] f, int c, int i)
        {
            var q = new double[hw];
            for (int p = 0; p < hw; p++) for (int ch = 0; ch < c; ch++) q[p] += Math.Pow(f[(i * c + ch) * hw + p], 2) / c;
            double norm = Math.Max(Math.Sqrt(Dot(q, q)), 1e-12);
            return q.Select(v => v / norm).ToArray();
        }
        int[] k = Kept(n, keep);
        if (k.Length == 0) return 0;
        return k.Average(i => { double[] a = Q(s, cs, i), b = Q(t, ct, i); return a.Zip(b, (x, y) => (x - y) * (x - y)).Average(); });
    }

    private const int N = 5, Ds = 4, Dt = 6;
    private static readonly double[] S = TestTensors.Normal(30, N * Ds, 1.5), T = TestTensors.Normal(31, N * Dt, 2);
    private static readonly bool[] Mask = [true, false, true, true, true];

    public static TheoryData<string, bool> Relational() => new()
    {
        { "rkd", false }, { "rkd", true }, { "pkt", false }, { "pkt", true }, { "sp", false }, { "sp", true },
    };

    private static RelationalLoss Create(string method) => method switch
    {
        "rkd" => new RelationalKDLoss(25, 50),
        "pkt" => new ProbabilisticKTLoss(),
        _ => new SimilarityPreservingLoss(),
    };

    private static double Expected(string method, double[] s, double[] t, bool[]? keep) => method switch
    {
        "rkd" => Rkd(s, Ds, t, Dt, N, 25, 50, keep),
        "pkt" => Pkt(s, Ds, t, Dt, N, keep),
        _ => Sp(s, Ds, t, Dt, N, keep),
    };

    [Theory]
    [MemberData(nameof(Relational))]
    public void Relational_losses_match_their_formulas_with_different_widths_and_masks(string method, bool masked)
    {
        bool[]? keep = masked ? Mask : null;
        Tensor value = Create(method).forward(TestTensors.Float32(S, N, Ds), TestTensors.Float32(T, N, Dt), keep is null ? null : tensor(keep));
        TestTensors.Scalar(value).ShouldMatch(Expected(method, S, T, keep));

        // Features of any rank are flattened per example: [N, 2, 2] is the same as [N, 4].
        Tensor maps = Create(method).forward(TestTensors.Float32(S, N, 2, 2), TestTensors.Float32(T, N, Dt), keep is null ? null : tensor(keep));
        TestTensors.Scalar(maps).ShouldMatch(TestTensors.Scalar(value));
    }

    [Theory]
    [InlineData("rkd")]
    [InlineData("pkt")]
    [InlineData("sp")]
    public void Relational_losses_are_zero_with_fewer_than_two_examples_and_when_the_relations_agree(string method)
    {
        TestTensors.Scalar(Create(method).forward(TestTensors.Float32(S, N, Ds), TestTensors.Float32(T, N, Dt), tensor(new[] { false, true, false, false, false }))).Should().Be(0);
        Tensor x = zeros(1, 3, requires_grad: true);
        Tensor single = Create(method).forward(x, ones(1, 2));
        single.backward();
        TestTensors.Scalar(single).Should().Be(0);
        x.grad!.abs().sum().item<float>().Should().Be(0);
        // The same features (scaled, for RKD's mean-distance normalisation and the angle/cosine terms) relate identically.
        Tensor same = Create(method).forward(TestTensors.Float64(S, N, Ds), TestTensors.Float64(S.Select(v => 3 * v).ToArray(), N, Ds));
        TestTensors.Scalar(same).Should().BeLessThan(method == "pkt" ? 1e-6 : 1e-9);
    }

    [Theory]
    [InlineData("rkd")]
    [InlineData("pkt")]
    [InlineData("sp")]
    public void An_empty_batch_gives_zero_and_huge_features_give_the_value_of_their_scaled_down_copy(string method)
    {
        Tensor empty = zeros(0, 3, requires_grad: true);
        Tensor none = Create(method).forward(empty, zeros(0, 2));
        none.backward();
        TestTensors.Scalar(none).Should().Be(0, "the class's documentation promises 0 for fewer than two examples, none included");

        // Squares of 1e30 overflow float32; the losses are scale-invariant, so 1e30 · x must give the loss of x itself.
        double expected = Expected(method, S, T, null);
        Tensor huge = Create(method).forward(TestTensors.Float32(S, N, Ds) * 1e30f, TestTensors.Float32(T, N, Dt) * 1e30f);
        TestTensors.Scalar(huge).ShouldMatch(expected);
    }

    [Fact]
    public void Attention_transfer_refuses_a_map_without_channels_instead_of_returning_NaN()
    {
        FluentActions.Invoking(() => new AttentionTransferLoss().forward(zeros(2, 0, 4, 4), ones(2, 3, 4, 4))).Should().Throw<ArgumentException>()
            .WithParameterName("studentMap").WithMessage("studentMap must have at least one channel and one position; got [2, 0, 4, 4].*");
    }

    [Fact]
    public void Standardised_logits_of_a_single_class_are_zero_not_NaN()
    {
        Tensor logits = tensor(new float[] { 3f, -2f }).reshape(2, 1).requires_grad_();
        Tensor standardised = LogitStandardization.Apply(logits);
        standardised.abs().max().item<float>().Should().Be(0);
        Tensor loss = new SoftTargetKLLoss(2.0) { StandardizeLogits = true }.forward(logits, tensor(new float[] { 1f, 5f }).reshape(2, 1));
        loss.backward();
        loss.item<float>().Should().Be(0, "one class has probability 1 for both models");
        logits.grad!.isfinite().all().item<bool>().Should().BeTrue();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Attention_transfer_matches_its_formula_and_pools_the_larger_map(bool masked)
    {
        const int n = 3, cs = 2, ct = 5, side = 4;
        double[] s = TestTensors.Normal(32, n * cs * side * side), t = TestTensors.Normal(33, n * ct * side * side, 2);
        bool[]? keep = masked ? [true, false, true] : null;
        var loss = new AttentionTransferLoss();
        Tensor value = loss.forward(TestTensors.Float32(s, n, cs, side, side), TestTensors.Float32(t, n, ct, side, side), keep is null ? null : tensor(keep));
        TestTensors.Scalar(value).ShouldMatch(At(s, cs, t, ct, n, side * side, keep));

        // A teacher map twice as large is average-pooled 2×2 first.
        Tensor large = TestTensors.Float32(t, n, ct, side, side).repeat_interleave(2, 2).repeat_interleave(2, 3);
        TestTensors.Scalar(loss.forward(TestTensors.Float32(s, n, cs, side, side), large, keep is null ? null : tensor(keep))).ShouldMatch(TestTensors.Scalar(value));
    }

    [Fact]
    public void FitNets_hints_learn_a_1x1_regressor_when_the_channels_differ()
    {
        const int n = 3, cs = 2, ct = 3, side = 2;
        double[] s = TestTensors.Normal(34, n * cs * side * side), t = TestTensors.Normal(35, n * ct * side * side);
        var loss = new FeatureMapHintLoss(cs, ct);
        loss.Regressor.Should().NotBeNull();
        loss.parameters().Should().HaveCount(2, "the regressor's weight and bias train with the student");
        double[] w = TestTensors.Values(loss.Regressor!.weight!), b = TestTensors.Values(loss.Regressor.bias!);
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            double sum = 0;
            for (int o = 0; o < ct; o++)
            for (int p = 0; p < side * side; p++)
            {
                double guided = b[o];
                for (int c = 0; c < cs; c++) guided += w[o * cs + c] * s[(i * cs + c) * side * side + p];
                sum += Math.Pow(guided - t[(i * ct + o) * side * side + p], 2);
            }
            total += sum / (ct * side * side);
        }
        TestTensors.Scalar(loss.forward(TestTensors.Float32(s, n, cs, side, side), TestTensors.Float32(t, n, ct, side, side))).ShouldMatch(total / n);
        new FeatureMapHintLoss(3, 3).Regressor.Should().BeNull();
        FluentActions.Invoking(() => loss.forward(zeros(3, 2, 2, 2), zeros(3, 3, 4, 4))).Should().Throw<ArgumentException>().WithMessage("*same H and W*[3, 2, 2, 2]*[3, 3, 4, 4]*");
    }

    private static void GradientShouldMatchFiniteDifferences(Func<Tensor, Tensor> loss, double[] input, params long[] shape) =>
        FiniteDifferences.GradientShouldMatch(loss, input, shape, 1e-5);

    [Theory]
    [InlineData("rkd")]
    [InlineData("pkt")]
    [InlineData("sp")]
    public void Relational_gradients_match_finite_differences(string method) =>
        GradientShouldMatchFiniteDifferences(x => Create(method).forward(x, TestTensors.Float64(T, N, Dt), tensor(Mask)), S, N, Ds);

    [Fact]
    public void Attention_transfer_gradients_match_finite_differences() =>
        GradientShouldMatchFiniteDifferences(x => new AttentionTransferLoss().forward(x, TestTensors.Float64(TestTensors.Normal(36, 2 * 3 * 9), 2, 3, 3, 3)), TestTensors.Normal(37, 2 * 2 * 9), 2, 2, 3, 3);

    [Fact]
    public void Bad_input_names_the_argument_and_the_shapes()
    {
        FluentActions.Invoking(() => new RelationalKDLoss().forward(zeros(4, 3), zeros(5, 3))).Should().Throw<ArgumentException>().WithParameterName("teacherFeatures").WithMessage("*4 and 5*");
        FluentActions.Invoking(() => new ProbabilisticKTLoss().forward(zeros(4), zeros(4))).Should().Throw<ArgumentException>().WithParameterName("studentFeatures");
        FluentActions.Invoking(() => new SimilarityPreservingLoss().forward(zeros(4, 3), zeros(4, 3), tensor(new[] { true, false }))).Should().Throw<ArgumentException>().WithMessage("*mask*");
        FluentActions.Invoking(() => new RelationalKDLoss(angleWeight: -1)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("angleWeight");
        FluentActions.Invoking(() => new AttentionTransferLoss().forward(zeros(2, 3, 4), zeros(2, 3, 4, 4))).Should().Throw<ArgumentException>().WithParameterName("studentMap");
        FluentActions.Invoking(() => new AttentionTransferLoss(0)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("power");
        FluentActions.Invoking(() => new FeatureMapHintLoss(0, 3)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("studentChannels");
    }
}
