using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>The fused linear-head loss equals the unfused composition (logits = h·Wᵀ, then the loss) in value and in gradients.</summary>
public class FusedLinearDistillationLossTests
{
    public static TheoryData<string, double, bool> Cases() => new()
    {
        { "forward", 0, false }, { "forward", 0.5, true }, { "reverse", 0.2, false }, { "jsd", 0.3, true }, { "tvd", 0, false }, { "skew", 1.0, true },
    };

    private static LogitDistillationLoss Divergence(string kind) => kind switch
    {
        "forward" => new SoftTargetKLLoss(2.0),
        "reverse" => new ReverseKLLoss(1.5),
        "jsd" => new GeneralizedJensenShannonLoss(0.3, 2.0),
        "tvd" => new TotalVariationLoss(1.0),
        _ => new SkewKLLoss(0.1, reverse: true, temperature: 1.0),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Loss_and_gradients_match_the_unfused_composition_to_1e_5(string kind, double hardWeight, bool teacherAsHead)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        const int n = 37, d = 16, v = 53, dt = 12;
        Tensor hidden = randn(n, d), weight = randn(v, d) * 0.3;
        Tensor teacherHidden = randn(n, dt), teacherWeight = randn(v, dt) * 0.4;
        Tensor teacherLogits = teacherHidden.matmul(teacherWeight.t());
        Tensor labels = randint(0, v, [n]);
        labels[tensor(new long[] { 3, 4, 20, 36 })] = tensor(-100L);

        Tensor h1 = hidden.clone().requires_grad_(), w1 = weight.clone().requires_grad_();
        using var fused = new FusedLinearDistillationLoss(Divergence(kind), distillationWeight: 0.7, hardWeight: hardWeight, chunkRows: 10);
        Tensor fusedLoss = teacherAsHead ? fused.forward(h1, w1, new TeacherHead(teacherHidden, teacherWeight), labels) : fused.forward(h1, w1, teacherLogits, labels);
        fusedLoss.backward();

        Tensor h2 = hidden.clone().requires_grad_(), w2 = weight.clone().requires_grad_();
        Tensor logits = h2.matmul(w2.t());
        Tensor unfused = Divergence(kind).forward(logits, teacherLogits, null, labels) * 0.7;
        if (hardWeight > 0) unfused = unfused + new HardTargetCrossEntropyLoss().forward(logits, labels, null) * hardWeight;
        unfused.backward();

        fusedLoss.item<float>().Should().BeApproximately(unfused.item<float>(), 1e-5f * Math.Max(1, Math.Abs(unfused.item<float>())));
        RelativeError(h1.grad!, h2.grad!).Should().BeLessThan(1e-5);
        RelativeError(w1.grad!, w2.grad!).Should().BeLessThan(1e-5);
    }

    [Fact]
    public void The_upstream_gradient_scales_the_result_and_all_ignored_rows_give_zero()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        Tensor hidden = randn(6, 4).requires_grad_(), weight = randn(9, 4).requires_grad_(), teacher = randn(6, 9);
        using var fused = new FusedLinearDistillationLoss(new SoftTargetKLLoss(1.0), chunkRows: 4);

        (fused.forward(hidden, weight, teacher) * 3).backward();
        Tensor tripled = hidden.grad!.clone();
        hidden.grad!.zero_();
        fused.forward(hidden, weight, teacher).backward();
        RelativeError(tripled, hidden.grad! * 3).Should().BeLessThan(1e-6);

        Tensor none = full(6, -100L, dtype: ScalarType.Int64);
        fused.forward(hidden, weight, teacher, none).item<float>().Should().Be(0);
    }

    [Fact]
    public void Zero_rows_give_zero_and_zero_gradients_with_or_without_labels()
    {
        using var scope = NewDisposeScope();
        using var fused = new FusedLinearDistillationLoss(new SoftTargetKLLoss(2.0), chunkRows: 4);
        foreach (Tensor? labels in new[] { null, zeros(0, dtype: ScalarType.Int64) })
        {
            Tensor hidden = zeros(0, 4).requires_grad_(), weight = randn(9, 4).requires_grad_();

            Tensor loss = fused.forward(hidden, weight, zeros(0, 9), labels);
            loss.backward();

            loss.item<float>().Should().Be(0, "an empty batch contributes nothing, like the unfused loss (labels given: {0})", labels is not null);
            weight.grad!.abs().max().item<float>().Should().Be(0);
        }
    }

    [Fact]
    public void A_NaN_or_infinity_in_an_ignored_row_reaches_neither_the_loss_nor_any_gradient()
    {
        using var scope = NewDisposeScope();
        manual_seed(13);
        Tensor hidden = randn(6, 4), weight = randn(9, 4), teacher = randn(6, 9);
        Tensor labels = tensor(new long[] { 1, -100, 2, 3, -100, 4 });
        using var fused = new FusedLinearDistillationLoss(new SoftTargetKLLoss(2.0), hardWeight: 0.5, chunkRows: 4);
        Tensor cleanHidden = hidden.clone().requires_grad_(), cleanWeight = weight.clone().requires_grad_();
        fused.forward(cleanHidden, cleanWeight, teacher, labels).backward();
        Tensor poisonedHidden = hidden.clone(), poisonedTeacher = teacher.clone();
        poisonedHidden[1] = tensor(float.NaN);
        poisonedHidden[4, 2] = tensor(float.PositiveInfinity);
        poisonedTeacher[4] = tensor(float.NaN);
        Tensor h = poisonedHidden.requires_grad_(), w = weight.clone().requires_grad_();

        Tensor loss = fused.forward(h, w, poisonedTeacher, labels);
        loss.backward();

        float clean = fused.forward(cleanHidden, cleanWeight, teacher, labels).item<float>();
        loss.item<float>().Should().Be(clean, "ignored rows are dropped, whatever they hold");
        w.grad!.isfinite().all().item<bool>().Should().BeTrue();
        RelativeError(w.grad!, cleanWeight.grad!).Should().Be(0);
        h.grad![tensor(new long[] { 1, 4 })].abs().max().item<float>().Should().Be(0, "an ignored row gets no gradient");
    }

    [Fact]
    public void Shapes_are_checked_before_any_matrix_product()
    {
        using var fused = new FusedLinearDistillationLoss(new SoftTargetKLLoss(), hardWeight: 0.5);
        ((Action)(() => fused.forward(zeros(4, 8), zeros(10, 7), zeros(4, 10), zeros(4, dtype: ScalarType.Int64)))).Should().Throw<ArgumentException>().WithMessage("headWeight must have shape [*, 8]; got [10, 7].*");
        ((Action)(() => fused.forward(zeros(4, 8), zeros(10, 8), zeros(4, 11), zeros(4, dtype: ScalarType.Int64)))).Should().Throw<ArgumentException>().WithMessage("teacherLogits must have shape [4, 10]; got [4, 11].*");
        ((Action)(() => fused.forward(zeros(4, 8), zeros(10, 8), zeros(4, 10)))).Should().Throw<ArgumentException>().WithMessage("labels are required when hardWeight > 0.*");
        ((Action)(() => fused.forward(zeros(4, 8), zeros(10, 8), new TeacherHead(zeros(4, 6), zeros(10, 5)), zeros(4, dtype: ScalarType.Int64)))).Should().Throw<ArgumentException>().WithMessage("teacher.HeadWeight must have shape [10, 6]; got [10, 5].*");
        ((Action)(() => _ = new FusedLinearDistillationLoss(new SoftTargetKLLoss(), chunkRows: 0))).Should().Throw<ArgumentOutOfRangeException>();
    }

    private static double RelativeError(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item<float>();
    }
}
