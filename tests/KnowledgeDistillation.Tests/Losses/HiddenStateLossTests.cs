using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

public class HiddenStateLossTests
{
    private static readonly Func<double[], double[], int, bool[]?, double>[] References = [Reference.Cosine, Reference.Mse];

    private static HiddenStateLoss Create(int which, long? studentWidth = null, long? teacherWidth = null) =>
        which == 0 ? new CosineEmbeddingLoss(studentWidth, teacherWidth) : new HiddenStateMseLoss(studentWidth, teacherWidth);

    [Theory]
    [InlineData(0, false)]
    [InlineData(0, true)]
    [InlineData(1, false)]
    [InlineData(1, true)]
    public void Equal_widths_match_the_reference(int which, bool masked)
    {
        using var scope = NewDisposeScope();
        double[] s = TestTensors.Normal(1, 2 * 5 * 8), t = TestTensors.Normal(2, 2 * 5 * 8, 2);
        bool[]? keep = masked ? TestTensors.RandomKeep(3, 10) : null;
        using HiddenStateLoss loss = Create(which);

        double actual = TestTensors.Scalar(loss.forward(TestTensors.Float32(s, 2, 5, 8), TestTensors.Float32(t, 2, 5, 8), keep is null ? null : TestTensors.Mask(keep, 2, 5)));

        loss.Projection.Should().BeNull();
        actual.ShouldMatch(References[which](s, t, 8, keep));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Different_widths_go_through_the_learnable_projection(int which)
    {
        using var scope = NewDisposeScope();
        double[] s = TestTensors.Normal(11, 6 * 4), t = TestTensors.Normal(12, 6 * 7);
        bool[] keep = [true, false, true, true, false, true];
        using HiddenStateLoss loss = Create(which, studentWidth: 4, teacherWidth: 7);
        double[] weight = TestTensors.Values(loss.Projection!.weight!), bias = TestTensors.Values(loss.Projection.bias!);

        double actual = TestTensors.Scalar(loss.forward(TestTensors.Float32(s, 6, 4), TestTensors.Float32(t, 6, 7), TestTensors.Mask(keep, 6)));

        loss.parameters().Should().HaveCount(2, "the projection's weight and bias are the loss's parameters, for the optimizer");
        actual.ShouldMatch(References[which](Reference.Project(s, 4, weight, bias), t, 7, keep));
    }

    [Fact]
    public void The_projection_learns_and_the_teacher_gets_no_gradient()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        using var loss = new HiddenStateMseLoss(studentWidth: 3, teacherWidth: 5);
        Tensor student = randn(16, 3), teacher = student.matmul(randn(3, 5)).requires_grad_();
        var optimizer = optim.Adam(loss.parameters(), lr: 0.05);
        double first = TestTensors.Scalar(loss.forward(student, teacher));

        for (int step = 0; step < 300; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            loss.forward(student, teacher).backward();
            optimizer.step();
        }

        TestTensors.Scalar(loss.forward(student, teacher)).Should().BeLessThan(first / 100, "a linear map fits a linear target");
        teacher.grad.Should().BeNull();
    }

    [Fact]
    public void Cosine_of_a_zero_vector_is_zero_so_the_loss_is_one_not_NaN()
    {
        using var scope = NewDisposeScope();
        Tensor value = new CosineEmbeddingLoss().forward(zeros(2, 3), ones(2, 3));

        TestTensors.Scalar(value).Should().Be(1);
    }

    [Fact]
    public void Cosine_agrees_with_TorchSharps_cosine_embedding_loss()
    {
        using var scope = NewDisposeScope();
        Tensor s = TestTensors.Float32(TestTensors.Normal(21, 30), 6, 5), t = TestTensors.Float32(TestTensors.Normal(22, 30), 6, 5);

        double ours = TestTensors.Scalar(new CosineEmbeddingLoss().forward(s, t));
        double theirs = TestTensors.Scalar(nn.functional.cosine_embedding_loss(s, t, ones(6)));

        ours.ShouldMatch(theirs);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Every_row_masked_gives_zero_with_zero_gradient(int which)
    {
        using var scope = NewDisposeScope();
        Tensor s = randn(2, 3, 4).requires_grad_();

        Tensor value = Create(which).forward(s, randn(2, 3, 4), zeros([2, 3], dtype: ScalarType.Bool));
        value.backward();

        TestTensors.Scalar(value).Should().Be(0);
        TestTensors.Values(s.grad!).Should().OnlyContain(g => g == 0);
    }

    [Fact]
    public void Rejects_width_mismatch_without_projection_and_tells_how_to_get_one()
    {
        using var scope = NewDisposeScope();
        Action forward = () => new CosineEmbeddingLoss().forward(zeros(2, 3, 4), zeros(2, 3, 6));

        forward.Should().Throw<ArgumentException>().Where(e => e.ParamName == "teacherHidden")
            .WithMessage("studentHidden has width 4 but teacherHidden has width 6; construct CosineEmbeddingLoss(studentWidth: 4, teacherWidth: 6) to learn a projection.*");
    }

    [Fact]
    public void Rejects_inputs_that_do_not_fit_the_projection_or_each_other()
    {
        using var scope = NewDisposeScope();
        var loss = new HiddenStateMseLoss(studentWidth: 4, teacherWidth: 8);

        ((Action)(() => loss.forward(zeros(3, 5), zeros(3, 8)))).Should().Throw<ArgumentException>().WithMessage("studentHidden has width 5; this loss projects from width 4.*");
        ((Action)(() => loss.forward(zeros(3, 4), zeros(3, 9)))).Should().Throw<ArgumentException>().WithMessage("teacherHidden has width 9; this loss projects to width 8.*");
        ((Action)(() => loss.forward(zeros(3, 4), zeros(2, 8)))).Should().Throw<ArgumentException>()
            .WithMessage("studentHidden has shape [3, 4] and teacherHidden has shape [2, 8]; expected the same shape in every dimension but the last.*");
        ((Action)(() => loss.forward(zeros(3, 4), zeros(3, 8), ones(4)))).Should().Throw<ArgumentException>()
            .WithMessage("mask must have one entry per row, shape [3]; got shape [4]*");
        ((Action)(() => new HiddenStateMseLoss(studentWidth: 4))).Should().Throw<ArgumentException>()
            .WithMessage("Give both studentWidth and teacherWidth (for a projection) or neither; got studentWidth = 4, teacherWidth = null.*");
        ((Action)(() => new HiddenStateMseLoss().forward(zeros(4), zeros(4)))).Should().Throw<ArgumentException>()
            .WithMessage("studentHidden must be hidden states of shape [N, D] or [B, S, D]; got rank 1 with shape [4].*");
    }
}
