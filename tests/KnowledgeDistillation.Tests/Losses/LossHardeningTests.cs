using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Losses.TestTensors;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>The edges the hardening review found: NaN in dropped rows, integer label types, empty batches, bad top-k targets, zero heads, TinyBERT's attention loss.</summary>
public class LossHardeningTests
{
    public static TheoryData<string> Divergences => new() { "kl", "reverse", "jsd" };

    private static LogitDistillationLoss Divergence(string name) => name switch
    {
        "kl" => new SoftTargetKLLoss(2.0),
        "reverse" => new ReverseKLLoss(2.0),
        _ => new GeneralizedJensenShannonLoss(0.3, temperature: 2.0),
    };

    [Theory]
    [MemberData(nameof(Divergences))]
    public void On_the_chunked_path_a_NaN_in_a_masked_out_row_leaks_into_neither_value_nor_gradient(string name)
    {
        const int batch = 2, sequence = 8, classes = 50;
        double[] s = Normal(1, batch * sequence * classes), t = Normal(2, batch * sequence * classes);
        bool[] keep = RandomKeep(3, batch * sequence);
        keep[5] = false;
        LogitDistillationLoss loss = Divergence(name);
        loss.MaxChunkElements = 3 * classes; // chunks of three rows
        Tensor poisoned = Float32(s, batch, sequence, classes);
        poisoned[0, 5, 7] = tensor(float.NaN);
        poisoned[0, 5, 9] = tensor(float.PositiveInfinity);
        Tensor student = poisoned.requires_grad_();
        Tensor teacher = Float32(t, batch, sequence, classes);
        teacher[0, 5, 3] = tensor(float.NaN);

        Tensor value = loss.forward(student, teacher, Mask(keep, batch, sequence));
        value.backward();

        double expected = name switch
        {
            "kl" => Reference.SoftTargetKl(s, t, classes, 2.0, keep: keep),
            "reverse" => Reference.ReverseKl(s, t, classes, 2.0, keep: keep),
            _ => Reference.GeneralizedJsd(s, t, classes, 0.3, 2.0, keep: keep),
        };
        Scalar(value).Should().BeApproximately(expected, 1e-5);
        double[] gradient = Values(student.grad!);
        gradient.Should().OnlyContain(g => double.IsFinite(g));
        gradient.Skip(5 * classes).Take(classes).Should().OnlyContain(g => g == 0);
    }

    [Fact]
    public void The_issue_shape_2_by_64_by_40000_takes_the_chunked_path_and_stays_finite()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        Tensor student = randn(2, 64, 40000).requires_grad_();
        Tensor teacher = randn(2, 64, 40000);
        Tensor mask = ones(2, 64, dtype: ScalarType.Bool);
        mask[1, 10] = tensor(false);
        using (no_grad()) student[1, 10, 0] = tensor(float.NaN);
        var loss = new SoftTargetKLLoss(2.0);
        (student.numel() > loss.MaxChunkElements).Should().BeTrue("this is the chunked path");

        Tensor value = loss.forward(student, teacher, mask);
        value.backward();

        float.IsFinite(value.item<float>()).Should().BeTrue();
        student.grad!.isfinite().all().item<bool>().Should().BeTrue();
    }

    [Theory]
    [InlineData(ScalarType.Int32, 0.0)]
    [InlineData(ScalarType.Int32, 0.1)]
    [InlineData(ScalarType.Int16, 0.0)]
    [InlineData(ScalarType.Byte, 0.0)]
    public void Hard_targets_accept_every_integer_label_type_on_both_paths(ScalarType labelType, double smoothing)
    {
        const int rows = 6, classes = 5;
        double[] logits = Normal(5, rows * classes);
        long[] labels = [0, 4, 2, 3, 1, 2];
        var loss = new HardTargetCrossEntropyLoss(labelSmoothing: smoothing);

        Tensor value = loss.forward(Float32(logits, rows, classes), tensor(labels).to(labelType));

        Scalar(value).Should().BeApproximately(Reference.CrossEntropy(logits, labels, classes, smoothing: smoothing), 1e-5);
    }

    public static TheoryData<string, long[]> EmptyBatches => new()
    {
        { "kl", [0, 7] }, { "reverse", [0, 7] }, { "jsd", [0, 7] }, { "kl", [3, 0, 7] }, { "jsd", [0, 4, 7] },
        { "ce", [0, 7] }, { "ce", [2, 0, 7] }, { "cosine", [0, 7] }, { "mse", [0, 4, 7] }, { "attention", [0, 2, 3, 3] }, { "topk", [0, 7] },
    };

    [Theory]
    [MemberData(nameof(EmptyBatches))]
    public void An_empty_batch_gives_exactly_zero_with_a_zero_gradient_with_or_without_mask_and_labels(string loss, long[] shape)
    {
        foreach (bool withMaskAndLabels in new[] { false, true })
        {
            Tensor student = zeros(shape).requires_grad_();
            Tensor teacher = zeros(shape);
            long[] rows = shape[..^1];
            Tensor? mask = withMaskAndLabels ? ones(rows, dtype: ScalarType.Bool) : null;
            Tensor? labels = withMaskAndLabels || loss == "ce" ? zeros(rows, dtype: ScalarType.Int64) : null;
            Tensor value = loss switch
            {
                "ce" => new HardTargetCrossEntropyLoss().forward(student, labels!, mask),
                "cosine" => new CosineEmbeddingLoss().forward(student, teacher, mask),
                "mse" => new HiddenStateMseLoss().forward(student, teacher, mask),
                "attention" => new AttentionMseLoss().forward(student, teacher, withMaskAndLabels ? ones(0, 3, dtype: ScalarType.Bool) : null),
                "topk" => new TopKSoftTargetLoss().forward(student, new TopKTargets(zeros(0, 3), zeros(0, 2, dtype: ScalarType.Int64), 1.0), mask, labels),
                _ => Divergence(loss).forward(student, teacher, mask, labels),
            };
            value.backward();

            value.item<float>().Should().Be(0f, $"{loss} {Shapes(shape)} mask/labels={withMaskAndLabels}");
            student.grad.Should().NotBeNull();
            student.grad!.shape.Should().Equal(shape);
        }
    }

    [Fact]
    public void Top_k_targets_reject_a_bad_temperature_and_bad_class_indices_naming_the_argument()
    {
        Action negativeTemperature = () => _ = new TopKTargets(full(2, 3, 1.0 / 3), zeros(2, 2, dtype: ScalarType.Int64), -1);
        negativeTemperature.Should().Throw<ArgumentException>().Where(e => e.ParamName == "temperature").WithMessage("*greater than 0*-1*");

        Action negativeIndex = () => _ = new TopKTargets(full(2, 3, 1.0 / 3), tensor(new long[] { 0, -1, 2, 1 }, 2, 2), 1);
        negativeIndex.Should().Throw<ArgumentException>().Where(e => e.ParamName == "indices").WithMessage("*found -1*");

        Action floatIndices = () => _ = new TopKTargets(full(2, 3, 1.0 / 3), zeros(2, 2), 1);
        floatIndices.Should().Throw<ArgumentException>().Where(e => e.ParamName == "indices");

        using var targets = new TopKTargets(full(2, 3, 1.0 / 3), tensor(new long[] { 0, 1, 2, 9 }, 2, 2), 1);
        Action outOfRange = () => new TopKSoftTargetLoss().forward(zeros(2, 5), targets);
        outOfRange.Should().Throw<ArgumentException>().Where(e => e.ParamName == "teacher").WithMessage("*[0, 5)*found 9*");
    }

    [Fact]
    public void Attention_maps_with_zero_heads_are_an_argument_error_not_a_division_by_zero()
    {
        Action zeroHeads = () => new AttentionMseLoss().forward(zeros(2, 0, 3, 3), zeros(2, 4, 3, 3));

        zeroHeads.Should().Throw<ArgumentException>().Where(e => e.ParamName == "studentAttention").WithMessage("*at least one head*[2, 0, 3, 3]*");
    }

    /// <summary>
    /// TinyBERT's attention loss (its general distillation script): for each map separately, cells &lt;= -100 become 0;
    /// then the mean of the squared difference over all B·H·S·S cells. Its masks add -10000 to the raw score, so a
    /// masked cell with a positive raw score sits above -1e4 — the case the old default got wrong.
    /// </summary>
    [Fact]
    public void The_TinyBERT_setting_reproduces_TinyBERTs_attention_loss_exactly()
    {
        const int b = 2, h = 3, n = 5;
        int[] lengths = [5, 3];
        double[] Scores(int seed)
        {
            var r = new Random(seed);
            var values = new double[b * h * n * n];
            for (int i = 0; i < values.Length; i++)
            {
                int key = i % n, example = i / (h * n * n);
                double raw = (float)(-3 + 11 * r.NextDouble()); // raw scores in [-3, 8]: many positive
                values[i] = key < lengths[example] ? raw : (float)(raw - 10000);
            }
            return values;
        }
        double[] s = Scores(12), t = Scores(13);
        s[7] = -150; // masked in the student only: TinyBERT counts (0 - t)^2 there

        double expected = 0;
        for (int i = 0; i < s.Length; i++)
        {
            double si = s[i] <= -100 ? 0 : s[i], ti = t[i] <= -100 ? 0 : t[i];
            expected += (si - ti) * (si - ti);
        }
        expected /= s.Length;

        Tensor value = AttentionMseLoss.TinyBert().forward(Float64(s, b, h, n, n), Float64(t, b, h, n, n));

        Scalar(value).Should().BeApproximately(expected, 1e-9 * Math.Max(1, expected));
    }

    private static string Shapes(long[] shape) => "[" + string.Join(", ", shape) + "]";
}
