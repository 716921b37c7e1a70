using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>
/// The chunked path of the logit losses (inputs larger than <see cref="LogitDistillationLoss.MaxChunkElements"/>):
/// values against the double-precision reference, gradients against central finite differences, and the edge
/// cases of the direct path (masks, ignored labels, -inf logits, nothing kept, no_grad).
/// </summary>
public class ChunkedLossTests
{
    private const int Batch = 3, Sequence = 7, Classes = 11;
    private const long FourRowsPerChunk = 4 * Classes; // 21 rows: chunks of 4, 4, 4, 4, 4 and 1

    private static readonly double[] StudentValues = TestTensors.Normal(11, Batch * Sequence * Classes, 2);
    private static readonly double[] TeacherValues = TestTensors.Normal(12, Batch * Sequence * Classes, 3);
    private static readonly bool[] Keep = TestTensors.RandomKeep(13, Batch * Sequence);

    public static TheoryData<string> Losses => new() { "kl", "reverse", "jsd" };

    private static LogitDistillationLoss Create(string name) => name switch
    {
        "kl" => new SoftTargetKLLoss(2.5) { MaxChunkElements = FourRowsPerChunk },
        "reverse" => new ReverseKLLoss(1.5) { MaxChunkElements = FourRowsPerChunk },
        _ => new GeneralizedJensenShannonLoss(0.3, 2.0, normalize: true) { MaxChunkElements = FourRowsPerChunk },
    };

    private static double Expected(string name, double[] s, double[] t, bool[]? keep) => name switch
    {
        "kl" => Reference.SoftTargetKl(s, t, Classes, 2.5, keep: keep),
        "reverse" => Reference.ReverseKl(s, t, Classes, 1.5, keep: keep),
        _ => Reference.GeneralizedJsd(s, t, Classes, 0.3, 2.0, normalize: true, keep: keep),
    };

    [Theory]
    [MemberData(nameof(Losses))]
    public void Chunked_values_match_the_double_precision_reference_with_and_without_gradients(string name)
    {
        using var scope = NewDisposeScope();
        LogitDistillationLoss loss = Create(name);
        Tensor teacher = TestTensors.Float64(TeacherValues, Batch, Sequence, Classes), mask = TestTensors.Mask(Keep, Batch, Sequence);
        double expected = Expected(name, StudentValues, TeacherValues, Keep);

        Tensor student = TestTensors.Float64(StudentValues, Batch, Sequence, Classes).requires_grad_();
        TestTensors.Scalar(loss.forward(student, teacher, mask)).Should().BeApproximately(expected, 1e-10 * Math.Abs(expected));
        using (no_grad())
        {
            TestTensors.Scalar(loss.forward(student, teacher, mask)).Should().BeApproximately(expected, 1e-10 * Math.Abs(expected));
        }
        TestTensors.ShouldMatch(TestTensors.Scalar(loss.forward(student.to(ScalarType.Float32), teacher.to(ScalarType.Float32), mask)), expected);
    }

    [Theory]
    [MemberData(nameof(Losses))]
    public void Chunked_gradients_match_finite_differences(string name)
    {
        using var scope = NewDisposeScope();
        LogitDistillationLoss loss = Create(name);
        Tensor teacher = TestTensors.Float64(TeacherValues, Batch, Sequence, Classes), mask = TestTensors.Mask(Keep, Batch, Sequence);
        Tensor student = TestTensors.Float64(StudentValues, Batch, Sequence, Classes).requires_grad_();
        loss.forward(student, teacher, mask).backward();
        double[] analytic = TestTensors.Values(student.grad!);

        const double h = 1e-6;
        for (int i = 0; i < StudentValues.Length; i += 7) // every 7th element: all chunks, kept and dropped rows
        {
            double[] plus = (double[])StudentValues.Clone(), minus = (double[])StudentValues.Clone();
            plus[i] += h;
            minus[i] -= h;
            double numeric = (Expected(name, plus, TeacherValues, Keep) - Expected(name, minus, TeacherValues, Keep)) / (2 * h);
            analytic[i].Should().BeApproximately(numeric, 1e-6 * Math.Max(1, Math.Abs(numeric)), "element {0}", i);
        }
    }

    [Fact]
    public void Chunked_and_direct_paths_agree_with_ignored_labels_and_minus_infinity_logits()
    {
        using var scope = NewDisposeScope();
        double[] s = (double[])StudentValues.Clone(), t = (double[])TeacherValues.Clone();
        for (int row = 0; row < Batch * Sequence; row++)
        {
            s[row * Classes + 5] = t[row * Classes + 5] = double.NegativeInfinity; // a padded vocabulary entry
        }
        long[] labelValues = Enumerable.Range(0, Batch * Sequence).Select(r => r % 3 == 0 ? -100L : r % Classes).ToArray();
        Tensor labels = tensor(labelValues, [Batch, Sequence]);

        (double Value, double[] Gradient) Run(long maxChunkElements)
        {
            var loss = new SoftTargetKLLoss(2.0) { MaxChunkElements = maxChunkElements };
            Tensor student = TestTensors.Float64(s, Batch, Sequence, Classes).requires_grad_();
            Tensor value = loss.forward(student, TestTensors.Float64(t, Batch, Sequence, Classes), null, labels);
            value.backward();
            return (TestTensors.Scalar(value), TestTensors.Values(student.grad!));
        }

        var (directValue, directGradient) = Run(long.MaxValue);
        var (chunkedValue, chunkedGradient) = Run(3 * Classes);
        bool[] kept = labelValues.Select(l => l != -100).ToArray();
        chunkedValue.Should().BeApproximately(Reference.SoftTargetKl(s, t, Classes, 2.0, keep: kept), 1e-10);
        chunkedValue.Should().BeApproximately(directValue, 1e-12);
        chunkedGradient.Should().AllSatisfy(g => double.IsFinite(g).Should().BeTrue());
        for (int i = 0; i < chunkedGradient.Length; i++) chunkedGradient[i].Should().BeApproximately(directGradient[i], 1e-12, "element {0}", i);
    }

    [Fact]
    public void Chunked_loss_with_no_row_kept_is_zero_with_zero_gradient()
    {
        using var scope = NewDisposeScope();
        var loss = new SoftTargetKLLoss() { MaxChunkElements = FourRowsPerChunk };
        Tensor student = randn(Batch, Sequence, Classes).requires_grad_();
        Tensor value = loss.forward(student, randn(Batch, Sequence, Classes), zeros(Batch, Sequence, ScalarType.Bool));
        value.backward();
        value.item<float>().Should().Be(0);
        student.grad!.abs().max().item<float>().Should().Be(0);
    }

    [Fact]
    public void Max_chunk_elements_below_one_is_refused_with_the_value()
    {
        var loss = new SoftTargetKLLoss();
        Action act = () => loss.MaxChunkElements = 0;
        act.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("MaxChunkElements").WithMessage("*at least 1*got 0*");
    }
}
