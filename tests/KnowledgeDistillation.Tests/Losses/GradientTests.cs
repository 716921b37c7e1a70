using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>Autograd gradients of every loss against central finite differences, in float64.</summary>
public class GradientTests
{
    private static void GradientShouldMatchFiniteDifferences(Func<Tensor, Tensor> loss, double[] input, params long[] shape) =>
        FiniteDifferences.GradientShouldMatch(loss, input, shape);

    private static readonly double[] Logits = TestTensors.Normal(1, 2 * 3 * 5, 2);
    private static readonly Tensor TeacherLogits = TestTensors.Float64(TestTensors.Normal(2, 2 * 3 * 5, 3), 2, 3, 5);
    private static readonly Tensor Labels = tensor(new long[] { 1, -100, 4, 0, 2, -100 }, [2, 3]);
    private static readonly Tensor Keep = tensor(new[] { true, true, false, true, true, true }, [2, 3]);

    [Fact]
    public void Soft_target_KL() =>
        GradientShouldMatchFiniteDifferences(x => new SoftTargetKLLoss(2.5).forward(x, TeacherLogits, Keep, Labels), Logits, 2, 3, 5);

    [Fact]
    public void Reverse_KL() =>
        GradientShouldMatchFiniteDifferences(x => new ReverseKLLoss(1.5).forward(x, TeacherLogits, Keep), Logits, 2, 3, 5);

    [Theory]
    [InlineData(0.3, false)]
    [InlineData(0.8, true)]
    public void Generalized_JSD(double beta, bool normalize) =>
        GradientShouldMatchFiniteDifferences(x => new GeneralizedJensenShannonLoss(beta, 2.0, normalize).forward(x, TeacherLogits, null, Labels), Logits, 2, 3, 5);

    [Fact]
    public void Total_variation() =>
        GradientShouldMatchFiniteDifferences(x => new TotalVariationLoss(1.5).forward(x, TeacherLogits, Keep, Labels), Logits, 2, 3, 5);

    [Theory]
    [InlineData(0.1, false)]
    [InlineData(0.1, true)]
    [InlineData(0.5, true)]
    public void Skew_KL(double alpha, bool reverse) =>
        GradientShouldMatchFiniteDifferences(x => new SkewKLLoss(alpha, reverse, 2.0).forward(x, TeacherLogits, Keep), Logits, 2, 3, 5);

    [Fact]
    public void Hard_target_cross_entropy_with_smoothing() =>
        GradientShouldMatchFiniteDifferences(x => new HardTargetCrossEntropyLoss(labelSmoothing: 0.1).forward(x, Labels, Keep), Logits, 2, 3, 5);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Hidden_state_losses_through_a_projection(bool cosine)
    {
        HiddenStateLoss loss = cosine ? new CosineEmbeddingLoss(studentWidth: 5, teacherWidth: 4) : new HiddenStateMseLoss(studentWidth: 5, teacherWidth: 4);
        loss.to(ScalarType.Float64);
        Tensor teacher = TestTensors.Float64(TestTensors.Normal(3, 2 * 3 * 4), 2, 3, 4);
        GradientShouldMatchFiniteDifferences(x => loss.forward(x, teacher, Keep), Logits, 2, 3, 5);
    }

    [Fact]
    public void Attention_MSE_with_padding_and_grouped_heads()
    {
        double[] student = TestTensors.Normal(5, 2 * 1 * 3 * 3);
        Tensor teacher = TestTensors.Float64(TestTensors.Normal(6, 2 * 2 * 3 * 3), 2, 2, 3, 3);
        Tensor tokens = tensor(new[] { true, true, false, true, true, true }, [2, 3]);
        GradientShouldMatchFiniteDifferences(x => new AttentionMseLoss(AttentionMapKind.Scores).forward(x, teacher, tokens), student, 2, 1, 3, 3);
    }

    [Fact]
    public void Temperature_squared_keeps_the_soft_gradient_comparable_across_temperatures()
    {
        using var scope = NewDisposeScope();
        Tensor teacher = TestTensors.Float32(TestTensors.Normal(7, 16 * 10, 3), 16, 10);
        double[] student = TestTensors.Normal(8, 16 * 10, 3);
        double GradientNorm(double temperature, bool scale)
        {
            Tensor x = TestTensors.Float32(student, 16, 10).requires_grad_();
            new SoftTargetKLLoss(temperature, scale).forward(x, teacher).backward();
            return TestTensors.Scalar(x.grad!.norm());
        }
        double[] temperatures = [1, 2, 5, 10, 20];

        double[] scaled = temperatures.Select(t => GradientNorm(t, true)).ToArray();
        double[] unscaled = temperatures.Select(t => GradientNorm(t, false)).ToArray();

        (scaled.Max() / scaled.Min()).Should().BeLessThan(1.5, "with T² the norms were {0}", string.Join(", ", scaled));
        (unscaled[0] / unscaled[^1]).Should().BeGreaterThan(100, "without T² the gradient shrinks with T: {0}", string.Join(", ", unscaled));
        // In the high-temperature regime the unscaled gradient falls as 1/T²: doubling T quarters it.
        (unscaled[^1] / unscaled[^2]).Should().BeApproximately(0.25, 0.02);
    }
}
