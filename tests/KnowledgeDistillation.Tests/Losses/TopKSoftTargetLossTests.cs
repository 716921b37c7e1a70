using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary><see cref="TopKSoftTargetLoss"/> against a double-precision loop over the coarsened (top-k + tail) distributions.</summary>
public class TopKSoftTargetLossTests
{
    private const int Rows = 6, Classes = 7;
    private static readonly double[] Student = TestTensors.Normal(21, Rows * Classes, 2);
    private static readonly double[] Teacher = TestTensors.Normal(22, Rows * Classes, 2.5);

    /// <summary>The teacher's top-k classes of each row (descending probability) and their probabilities, plus the tail, at temperature T.</summary>
    private static (long[] Indices, double[] Probabilities) TopK(double[] teacher, int k, double temperature)
    {
        var indices = new long[Rows * k];
        var probabilities = new double[Rows * (k + 1)];
        for (int r = 0; r < Rows; r++)
        {
            double[] p = Reference.LogSoftmax(teacher.AsSpan(r * Classes, Classes), temperature).Select(Math.Exp).ToArray();
            int[] order = Enumerable.Range(0, Classes).OrderByDescending(c => p[c]).ToArray();
            for (int i = 0; i < k; i++)
            {
                indices[r * k + i] = order[i];
                probabilities[r * (k + 1) + i] = p[order[i]];
            }
            probabilities[r * (k + 1) + k] = order.Skip(k).Sum(c => p[c]);
        }
        return (indices, probabilities);
    }

    /// <summary>T² · mean over kept rows of Σ_b P_b log(P_b / Q_b) over the k + 1 buckets.</summary>
    private static double Expected(double[] student, long[] indices, double[] probabilities, int k, double temperature, bool[]? keep)
    {
        double total = 0;
        int kept = 0;
        for (int r = 0; r < Rows; r++)
        {
            if (keep is not null && !keep[r]) continue;
            double[] q = Reference.LogSoftmax(student.AsSpan(r * Classes, Classes), temperature).Select(Math.Exp).ToArray();
            double inTop = 0;
            for (int i = 0; i < k; i++)
            {
                double p = probabilities[r * (k + 1) + i], qi = q[indices[r * k + i]];
                inTop += qi;
                if (p > 0) total += p * Math.Log(p / qi);
            }
            double tail = probabilities[r * (k + 1) + k];
            if (tail > 0) total += tail * Math.Log(tail / (1 - inTop));
            kept++;
        }
        return kept == 0 ? 0 : total / kept * temperature * temperature;
    }

    private static TopKTargets Targets(long[] indices, double[] probabilities, int k, double temperature) =>
        new(tensor(probabilities, [Rows, k + 1]), tensor(indices, [Rows, k]), temperature);

    [Fact]
    public void With_every_class_kept_it_equals_soft_target_KL()
    {
        using var scope = NewDisposeScope();
        var (indices, probabilities) = TopK(Teacher, Classes, 2.0);
        Tensor student = TestTensors.Float64(Student, Rows, Classes);
        double value = TestTensors.Scalar(new TopKSoftTargetLoss().forward(student, Targets(indices, probabilities, Classes, 2.0)));
        value.Should().BeApproximately(Reference.SoftTargetKl(Student, Teacher, Classes, 2.0), 1e-10);
    }

    [Theory]
    [InlineData(1, 1.0)]
    [InlineData(3, 2.0)]
    [InlineData(5, 4.0)]
    public void Coarsened_KL_matches_the_double_precision_loop_with_a_mask(int k, double temperature)
    {
        using var scope = NewDisposeScope();
        var (indices, probabilities) = TopK(Teacher, k, temperature);
        bool[] keep = [true, false, true, true, false, true];
        Tensor student = TestTensors.Float64(Student, Rows, Classes);
        double value = TestTensors.Scalar(new TopKSoftTargetLoss().forward(student, Targets(indices, probabilities, k, temperature), TestTensors.Mask(keep, Rows)));
        double expected = Expected(Student, indices, probabilities, k, temperature, keep);
        value.Should().BeApproximately(expected, 1e-10 * Math.Max(1, expected));
        value.Should().BeLessThan(Reference.SoftTargetKl(Student, Teacher, Classes, temperature, keep: keep), "merging outcomes can only lower a KL divergence");
    }

    [Fact]
    public void Gradient_matches_finite_differences()
    {
        using var scope = NewDisposeScope();
        const int k = 3;
        var (indices, probabilities) = TopK(Teacher, k, 2.0);
        long[] labels = [1, -100, 2, 0, 3, 4];
        bool[] keep = labels.Select(l => l != -100).ToArray();
        Tensor student = TestTensors.Float64(Student, Rows, Classes).requires_grad_();
        new TopKSoftTargetLoss().forward(student, Targets(indices, probabilities, k, 2.0), null, tensor(labels)).backward();
        double[] analytic = TestTensors.Values(student.grad!);
        for (int i = 0; i < Student.Length; i++)
        {
            double[] plus = (double[])Student.Clone(), minus = (double[])Student.Clone();
            plus[i] += 1e-6;
            minus[i] -= 1e-6;
            double numeric = (Expected(plus, indices, probabilities, k, 2.0, keep) - Expected(minus, indices, probabilities, k, 2.0, keep)) / 2e-6;
            analytic[i].Should().BeApproximately(numeric, 1e-6 * Math.Max(1, Math.Abs(numeric)), "element {0}", i);
        }
    }

    [Fact]
    public void Targets_that_do_not_cover_the_student_rows_are_refused_with_both_shapes()
    {
        using var scope = NewDisposeScope();
        var targets = new TopKTargets(rand(4, 3), zeros(4, 2, ScalarType.Int64), 1.0);
        Action act = () => new TopKSoftTargetLoss().forward(randn(Rows, Classes), targets);
        act.Should().Throw<ArgumentException>().WithParameterName("teacher").WithMessage("*[6, 7]*[4, 2]*");
    }
}
