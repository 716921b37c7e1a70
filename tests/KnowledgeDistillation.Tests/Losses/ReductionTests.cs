using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Losses.TestTensors;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>
/// The three reductions against double-precision references: Sum = Σ over kept rows, BatchMean = that sum / the first
/// dimension (PyTorch's batchmean on unflattened [B, S, C]), Mean = that sum / kept rows (DistilBERT's batchmean over selected tokens).
/// </summary>
public class ReductionTests
{
    private const int B = 3, S = 4, C = 6;
    private static readonly double[] StudentValues = Normal(31, B * S * C), TeacherValues = Normal(32, B * S * C);
    private static readonly bool[] Keep = RandomKeep(33, B * S);
    private static readonly int KeptCount = Keep.Count(k => k);

    public static TheoryData<string, RowReduction, bool> Cases()
    {
        var data = new TheoryData<string, RowReduction, bool>();
        foreach (string loss in new[] { "kl", "reverse", "jsd", "ce", "mse", "cosine" })
        {
            foreach (RowReduction reduction in Enum.GetValues<RowReduction>())
            {
                data.Add(loss, reduction, false);
                if (loss is "kl" or "reverse" or "jsd") data.Add(loss, reduction, true); // the chunked path too
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Each_reduction_matches_the_reference_sum_over_kept_rows_divided_as_documented(string loss, RowReduction reduction, bool chunked)
    {
        long[] labels = Enumerable.Range(0, B * S).Select(i => (long)(i % C)).ToArray();
        Tensor student = Float32(StudentValues, B, S, C), teacher = Float32(TeacherValues, B, S, C), mask = Mask(Keep, B, S);
        double referenceMean = loss switch
        {
            "kl" => Reference.SoftTargetKl(StudentValues, TeacherValues, C, 2.0, keep: Keep),
            "reverse" => Reference.ReverseKl(StudentValues, TeacherValues, C, 2.0, keep: Keep),
            "jsd" => Reference.GeneralizedJsd(StudentValues, TeacherValues, C, 0.3, 2.0, keep: Keep),
            "ce" => Reference.CrossEntropy(StudentValues, labels, C, keep: Keep),
            "mse" => Reference.Mse(StudentValues, TeacherValues, C, Keep),
            _ => Reference.Cosine(StudentValues, TeacherValues, C, Keep),
        };
        double referenceSum = referenceMean * KeptCount;
        double expected = reduction switch { RowReduction.Sum => referenceSum, RowReduction.BatchMean => referenceSum / B, _ => referenceMean };

        Tensor value;
        switch (loss)
        {
            case "ce":
                value = new HardTargetCrossEntropyLoss { Reduction = reduction }.forward(student, tensor(labels, B, S), mask);
                break;
            case "mse":
                value = new HiddenStateMseLoss { Reduction = reduction }.forward(student, teacher, mask);
                break;
            case "cosine":
                value = new CosineEmbeddingLoss { Reduction = reduction }.forward(student, teacher, mask);
                break;
            default:
                LogitDistillationLoss divergence = loss switch
                {
                    "kl" => new SoftTargetKLLoss(2.0),
                    "reverse" => new ReverseKLLoss(2.0),
                    _ => new GeneralizedJensenShannonLoss(0.3, temperature: 2.0),
                };
                divergence.Reduction = reduction;
                if (chunked) divergence.MaxChunkElements = 2 * C;
                value = divergence.forward(student, teacher, mask);
                break;
        }

        Scalar(value).Should().BeApproximately(expected, 1e-5 * Math.Max(1, Math.Abs(expected)));
    }

    [Fact]
    public void Top_k_targets_reduce_the_same_way()
    {
        var full = new TopKSoftTargetLoss();
        var sum = new TopKSoftTargetLoss { Reduction = RowReduction.Sum };
        Tensor student = Float32(StudentValues, B, S, C), mask = Mask(Keep, B, S);
        Tensor probabilities = Float32(TeacherValues, B, S, C).softmax(-1);
        using var targets = new TopKTargets(cat([probabilities, zeros(B, S, 1)], -1), arange(C).expand(B, S, C).contiguous(), 1.0);

        double mean = Scalar(full.forward(student, targets, mask)), total = Scalar(sum.forward(student, targets, mask));

        mean.Should().BeApproximately(Reference.SoftTargetKl(StudentValues, TeacherValues, C, 1.0, keep: Keep), 1e-5);
        total.Should().BeApproximately(mean * KeptCount, 1e-4);
    }

    [Fact]
    public void Rows_Kept_counts_what_the_losses_keep()
    {
        long[] labels = Enumerable.Range(0, B * S).Select(i => i % 5 == 0 ? -100L : 1L).ToArray();
        int expected = Keep.Zip(labels).Count(p => p.First && p.Second != -100);

        Rows.Kept([B, S], Mask(Keep, B, S), tensor(labels, B, S)).item<long>().Should().Be(expected);
        Rows.Kept([B, S]).item<long>().Should().Be(B * S);
        Action wrongShape = () => Rows.Kept([B, S], ones(B, dtype: ScalarType.Bool));
        wrongShape.Should().Throw<ArgumentException>().WithMessage("mask must have one entry per row, shape [3, 4]; got shape [3]*");
    }
}
