using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>Autograd gradients against central finite differences, in float64.</summary>
internal static class FiniteDifferences
{
    private const double Step = 1e-6;

    /// <summary>Compares d loss / d input from backward() with (L(x + h·e_i) − L(x − h·e_i)) / 2h for every element, to <paramref name="tolerance"/> × max(1, |numeric|).</summary>
    public static void GradientShouldMatch(Func<Tensor, Tensor> loss, double[] input, long[] shape, double tolerance = 1e-6)
    {
        using var scope = NewDisposeScope();
        Tensor x = TestTensors.Float64(input, shape).requires_grad_();
        loss(x).backward();
        double[] analytic = TestTensors.Values(x.grad!);

        using var noGrad = no_grad();
        for (int i = 0; i < input.Length; i++)
        {
            double[] plus = (double[])input.Clone(), minus = (double[])input.Clone();
            plus[i] += Step;
            minus[i] -= Step;
            double numeric = (TestTensors.Scalar(loss(TestTensors.Float64(plus, shape))) - TestTensors.Scalar(loss(TestTensors.Float64(minus, shape)))) / (2 * Step);
            analytic[i].Should().BeApproximately(numeric, tolerance * Math.Max(1, Math.Abs(numeric)), "element {0}", i);
        }
    }
}
