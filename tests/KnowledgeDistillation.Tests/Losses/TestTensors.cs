using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>Seeded random inputs as both a tensor and the exact doubles the reference sees.</summary>
internal static class TestTensors
{
    /// <summary>Normal(0, scale) values rounded to float32, so the tensor and the double array hold the same numbers.</summary>
    public static double[] Normal(int seed, int count, double scale = 1.0)
    {
        var random = new Random(seed);
        var values = new double[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            values[i] = (float)(scale * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
        }
        return values;
    }

    public static Tensor Float32(double[] values, params long[] shape) =>
        tensor(values.Select(v => (float)v).ToArray(), shape);

    public static Tensor Float64(double[] values, params long[] shape) => tensor(values, shape);

    public static bool[] RandomKeep(int seed, int count, double keepProbability = 0.7)
    {
        var random = new Random(seed);
        bool[] keep = Enumerable.Range(0, count).Select(_ => random.NextDouble() < keepProbability).ToArray();
        keep[0] = true; // at least one row counts
        return keep;
    }

    public static Tensor Mask(bool[] keep, params long[] shape) => tensor(keep, shape);

    public static double[] Values(Tensor t) => t.to(ScalarType.Float64).cpu().data<double>().ToArray();

    public static double Scalar(Tensor t) => t.to(ScalarType.Float64).cpu().item<double>();

    /// <summary>The library's float32 tolerance: 1e-5 relative, with 1e-6 absolute for values near 0.</summary>
    public static void ShouldMatch(this double actual, double expected, double relative = 1e-5, double absolute = 1e-6)
    {
        Math.Abs(actual - expected).Should().BeLessThanOrEqualTo(
            relative * Math.Abs(expected) + absolute, "expected {0} but the loss gave {1}", expected, actual);
    }
}
