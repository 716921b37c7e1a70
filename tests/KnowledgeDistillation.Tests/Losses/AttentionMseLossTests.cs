using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

public class AttentionMseLossTests
{
    private const int Batch = 2, Seq = 5;

    private static double[] Probabilities(int seed, int heads)
    {
        double[] scores = TestTensors.Normal(seed, Batch * heads * Seq * Seq, 2);
        var probs = new double[scores.Length];
        for (int row = 0; row < scores.Length / Seq; row++)
        {
            double[] logP = Reference.LogSoftmax(scores.AsSpan(row * Seq, Seq), 1);
            for (int j = 0; j < Seq; j++) probs[row * Seq + j] = (float)Math.Exp(logP[j]);
        }
        return probs;
    }

    private static readonly bool[] Tokens = [true, true, true, false, false, true, true, true, true, true];

    [Theory]
    [InlineData(4, 4, false)]
    [InlineData(4, 4, true)]
    [InlineData(2, 4, true)]
    [InlineData(1, 4, false)]
    public void Probabilities_match_the_reference_with_heads_grouped_and_padding_excluded(int studentHeads, int teacherHeads, bool masked)
    {
        using var scope = NewDisposeScope();
        double[] s = Probabilities(1, studentHeads), t = Probabilities(2, teacherHeads);
        using var loss = new AttentionMseLoss();

        double actual = TestTensors.Scalar(loss.forward(
            TestTensors.Float32(s, Batch, studentHeads, Seq, Seq), TestTensors.Float32(t, Batch, teacherHeads, Seq, Seq),
            masked ? TestTensors.Mask(Tokens, Batch, Seq) : null));

        actual.ShouldMatch(Reference.AttentionMse(s, t, Batch, studentHeads, teacherHeads, Seq, masked ? Tokens : null, null));
    }

    [Fact]
    public void Padded_cells_leave_the_count_as_well_as_the_sum()
    {
        using var scope = NewDisposeScope();
        // Student and teacher differ by exactly 1 in every cell, so the mean over any set of kept cells is 1.
        Tensor teacher = zeros(Batch, 2, Seq, Seq), student = ones(Batch, 2, Seq, Seq);

        double value = TestTensors.Scalar(new AttentionMseLoss().forward(student, teacher, TestTensors.Mask(Tokens, Batch, Seq)));

        value.Should().Be(1, "TinyBERT's convention (divide by every cell) would give (3² + 4²)/(2·5²) = 0.5 here");
    }

    [Fact]
    public void Scores_skip_causal_minus_infinity_and_additive_masks_with_finite_gradients()
    {
        using var scope = NewDisposeScope();
        double[] s = TestTensors.Normal(5, Batch * 2 * Seq * Seq, 3), t = TestTensors.Normal(6, Batch * 2 * Seq * Seq, 3);
        for (int b = 0; b < Batch; b++)
        for (int h = 0; h < 2; h++)
        for (int i = 0; i < Seq; i++)
        for (int j = i + 1; j < Seq; j++)
        {
            int cell = ((b * 2 + h) * Seq + i) * Seq + j;
            s[cell] = double.NegativeInfinity;                          // causal mask in the student
            t[cell] = (b + h) % 2 == 0 ? double.NegativeInfinity : -10000; // -inf or an additive mask in the teacher
        }
        Tensor student = TestTensors.Float32(s, Batch, 2, Seq, Seq).requires_grad_();

        Tensor value = new AttentionMseLoss(AttentionMapKind.Scores).forward(student, TestTensors.Float32(t, Batch, 2, Seq, Seq));
        value.backward();

        TestTensors.Scalar(value).ShouldMatch(Reference.AttentionMse(s, t, Batch, 2, 2, Seq, null, -1e4));
        TestTensors.Values(student.grad!).Should().OnlyContain(g => double.IsFinite(g));
    }

    [Fact]
    public void Rejects_head_counts_that_do_not_group_and_mismatched_lengths()
    {
        using var scope = NewDisposeScope();
        var loss = new AttentionMseLoss();

        ((Action)(() => loss.forward(zeros(2, 3, 5, 5), zeros(2, 4, 5, 5)))).Should().Throw<ArgumentException>()
            .WithMessage("teacherAttention has 4 heads and studentAttention 3; the teacher's head count must be a multiple of the student's*");
        ((Action)(() => loss.forward(zeros(2, 2, 5, 5), zeros(2, 4, 6, 6)))).Should().Throw<ArgumentException>()
            .WithMessage("studentAttention has shape [2, 2, 5, 5] and teacherAttention has shape [2, 4, 6, 6]; expected the same batch size and sequence lengths.*");
        ((Action)(() => loss.forward(zeros(2, 5, 5), zeros(2, 5, 5)))).Should().Throw<ArgumentException>()
            .WithMessage("studentAttention must be attention maps of shape [B, H, S, S]; got rank 3 with shape [2, 5, 5].*");
        ((Action)(() => loss.forward(zeros(2, 2, 5, 5), zeros(2, 2, 5, 5), ones(2, 4)))).Should().Throw<ArgumentException>()
            .WithMessage("paddingMask must have one entry per row, shape [2, 5]; got shape [2, 4]*");
    }
}
