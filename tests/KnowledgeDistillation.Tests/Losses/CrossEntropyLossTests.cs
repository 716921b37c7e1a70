using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

public class CrossEntropyLossTests
{
    private static (double[] Logits, long[] Labels) Inputs(int rows, int classes, int seed, double ignoreFraction = 0.25)
    {
        double[] logits = TestTensors.Normal(seed, rows * classes, 2.5);
        var random = new Random(seed + 1);
        long[] labels = Enumerable.Range(0, rows).Select(_ => random.NextDouble() < ignoreFraction ? -100L : random.Next(classes)).ToArray();
        labels[0] = 0;
        return (logits, labels);
    }

    [Theory]
    [InlineData(new long[] { 7, 5 }, 0.0)]
    [InlineData(new long[] { 7, 5 }, 0.1)]
    [InlineData(new long[] { 3, 4, 23 }, 0.0)]
    [InlineData(new long[] { 3, 4, 23 }, 0.2)]
    public void Matches_the_reference_over_rows_that_are_not_ignored(long[] shape, double smoothing)
    {
        using var scope = NewDisposeScope();
        int classes = (int)shape[^1], rows = (int)(shape.Aggregate(1L, (a, b) => a * b) / classes);
        var (logits, labels) = Inputs(rows, classes, 5);
        using var loss = new HardTargetCrossEntropyLoss(labelSmoothing: smoothing);

        double actual = TestTensors.Scalar(loss.forward(TestTensors.Float32(logits, shape), tensor(labels, shape[..^1])));

        actual.ShouldMatch(Reference.CrossEntropy(logits, labels, classes, -100, smoothing));
    }

    [Fact]
    public void A_mask_and_a_custom_ignore_index_combine()
    {
        using var scope = NewDisposeScope();
        var (logits, labels) = Inputs(8, 6, 15, ignoreFraction: 0);
        labels[3] = 99;
        bool[] keep = [true, true, false, true, true, false, true, true];
        using var loss = new HardTargetCrossEntropyLoss(ignoreIndex: 99);

        double actual = TestTensors.Scalar(loss.forward(TestTensors.Float32(logits, 8, 6), tensor(labels), TestTensors.Mask(keep, 8)));

        actual.ShouldMatch(Reference.CrossEntropy(logits, labels, 6, 99, 0, keep));
    }

    [Fact]
    public void Label_smoothing_spreads_over_the_classes_that_are_not_minus_infinity()
    {
        using var scope = NewDisposeScope();
        var (logits, labels) = Inputs(4, 7, 25, ignoreFraction: 0);
        for (int r = 0; r < 4; r++) logits[r * 7 + 6] = double.NegativeInfinity;
        labels = labels.Select(l => l == 6 ? 1 : l).ToArray();
        Tensor input = TestTensors.Float32(logits, 4, 7).requires_grad_();

        Tensor value = new HardTargetCrossEntropyLoss(labelSmoothing: 0.1).forward(input, tensor(labels));
        value.backward();

        TestTensors.Scalar(value).ShouldMatch(Reference.CrossEntropy(logits, labels, 7, -100, 0.1));
        TestTensors.Values(input.grad!).Should().OnlyContain(g => double.IsFinite(g));
    }

    [Fact]
    public void Agrees_with_TorchSharps_cross_entropy_when_nothing_is_ignored()
    {
        using var scope = NewDisposeScope();
        var (logits, labels) = Inputs(9, 5, 35, ignoreFraction: 0);
        Tensor input = TestTensors.Float32(logits, 9, 5), target = tensor(labels);

        double ours = TestTensors.Scalar(new HardTargetCrossEntropyLoss(labelSmoothing: 0.15).forward(input, target));
        double theirs = TestTensors.Scalar(nn.functional.cross_entropy(input, target, label_smoothing: 0.15));

        ours.ShouldMatch(theirs);
    }

    [Fact]
    public void All_rows_ignored_gives_zero_with_zero_gradient()
    {
        using var scope = NewDisposeScope();
        Tensor input = TestTensors.Float32(TestTensors.Normal(45, 12), 3, 4).requires_grad_();

        Tensor value = new HardTargetCrossEntropyLoss().forward(input, full([3], -100L));
        value.backward();

        TestTensors.Scalar(value).Should().Be(0);
        TestTensors.Values(input.grad!).Should().OnlyContain(g => g == 0);
    }

    [Fact]
    public void Half_precision_logits_are_computed_in_float32()
    {
        using var scope = NewDisposeScope();
        var (logits, labels) = Inputs(6, 9, 55);
        Tensor low = TestTensors.Float32(logits, 6, 9).to(ScalarType.BFloat16);

        Tensor value = new HardTargetCrossEntropyLoss().forward(low, tensor(labels));

        value.dtype.Should().Be(ScalarType.Float32);
        TestTensors.Scalar(value).ShouldMatch(Reference.CrossEntropy(TestTensors.Values(low), labels, 9));
    }

    [Fact]
    public void Rejects_labels_out_of_range_naming_the_value()
    {
        using var scope = NewDisposeScope();
        Action forward = () => new HardTargetCrossEntropyLoss().forward(zeros(3, 4), tensor(new long[] { 0, 4, -100 }));

        forward.Should().Throw<ArgumentException>().Where(e => e.ParamName == "labels").WithMessage("labels must be class indices in [0, 4) or the ignore index -100; found 4*");
    }

    [Fact]
    public void Rejects_bad_smoothing_labels_shape_and_dtype()
    {
        using var scope = NewDisposeScope();
        ((Action)(() => new HardTargetCrossEntropyLoss(labelSmoothing: 1.5))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("labelSmoothing must lie in [0, 1]; got 1.5*");
        ((Action)(() => new HardTargetCrossEntropyLoss().forward(zeros(3, 4), tensor(new long[] { 0, 1 }))))
            .Should().Throw<ArgumentException>().WithMessage("labels must have one entry per row, shape [3]; got shape [2]*");
        ((Action)(() => new HardTargetCrossEntropyLoss().forward(zeros(3, 4), zeros(3))))
            .Should().Throw<ArgumentException>().WithMessage("labels must be an integer tensor of class indices; got Float32*");
        ((Action)(() => new HardTargetCrossEntropyLoss().forward(zeros(new long[] { 3, 4 }, dtype: ScalarType.Int64), tensor(new long[] { 0, 1, 2 }))))
            .Should().Throw<ArgumentException>().WithMessage("studentLogits must be a floating-point tensor*got Int64 with shape [3, 4]*");
    }
}
