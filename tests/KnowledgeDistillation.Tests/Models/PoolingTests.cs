using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Models;

/// <summary><see cref="Pooling.Apply"/> against loops over plain arrays.</summary>
public class PoolingTests
{
    private static readonly double[,,] Hidden = new double[2, 4, 3];
    private static readonly long[,] Mask = { { 1, 1, 1, 0 }, { 1, 0, 0, 0 } };

    static PoolingTests()
    {
        for (int n = 0; n < 2; n++) for (int s = 0; s < 4; s++) for (int h = 0; h < 3; h++) Hidden[n, s, h] = Math.Sin(1 + n * 12 + s * 3 + h) * (h + 1);
    }

    [Theory]
    [InlineData(SequencePooling.Mean)]
    [InlineData(SequencePooling.Cls)]
    [InlineData(SequencePooling.LastToken)]
    public void Pooling_reads_only_the_real_tokens(SequencePooling kind)
    {
        Tensor pooled = Pooling.Apply(kind, tensor(Hidden.Cast<double>().ToArray(), [2, 4, 3]), tensor(Mask.Cast<long>().ToArray(), [2, 4]));
        pooled.shape.Should().Equal(2, 3);
        for (int n = 0; n < 2; n++)
        {
            int real = Enumerable.Range(0, 4).Count(s => Mask[n, s] == 1);
            for (int h = 0; h < 3; h++)
            {
                double expected = kind switch
                {
                    SequencePooling.Mean => Enumerable.Range(0, real).Sum(s => Hidden[n, s, h]) / real,
                    SequencePooling.Cls => Hidden[n, 0, h],
                    _ => Hidden[n, real - 1, h],
                };
                pooled[n, h].item<double>().Should().BeApproximately(expected, 1e-12);
            }
        }
    }

    [Fact]
    public void Without_a_mask_every_token_counts_and_an_all_padding_row_pools_to_zeros_not_NaN()
    {
        Tensor hidden = tensor(Hidden.Cast<double>().ToArray(), [2, 4, 3]);
        Pooling.Apply(SequencePooling.Mean, hidden, null)[1, 2].item<double>().Should().BeApproximately(Enumerable.Range(0, 4).Sum(s => Hidden[1, s, 2]) / 4, 1e-12);
        Pooling.Apply(SequencePooling.LastToken, hidden, null)[0, 1].item<double>().Should().Be(Hidden[0, 3, 1]);
        Tensor empty = Pooling.Apply(SequencePooling.Mean, hidden, zeros(2, 4, dtype: ScalarType.Int64));
        empty.abs().max().item<double>().Should().Be(0);
    }

    [Fact]
    public void Misshapen_inputs_are_refused_with_both_shapes()
    {
        ((Action)(() => Pooling.Apply(SequencePooling.Mean, zeros(2, 3), null))).Should().Throw<ArgumentException>().WithMessage("*[N, S, H]*[2, 3]*");
        ((Action)(() => Pooling.Apply(SequencePooling.Mean, zeros(2, 4, 3), ones(2, 5)))).Should().Throw<ArgumentException>().WithMessage("*[2, 4]*[2, 5]*");
    }
}
