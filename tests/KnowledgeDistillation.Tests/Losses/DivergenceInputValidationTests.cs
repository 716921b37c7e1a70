using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>Every bad input to the divergence losses fails with an ArgumentException that names the argument and both shapes.</summary>
public class DivergenceInputValidationTests
{
    public static TheoryData<string> Losses() => new() { nameof(SoftTargetKLLoss), nameof(ReverseKLLoss), nameof(GeneralizedJensenShannonLoss) };

    private static LogitDistillationLoss Create(string name) => name switch
    {
        nameof(SoftTargetKLLoss) => new SoftTargetKLLoss(),
        nameof(ReverseKLLoss) => new ReverseKLLoss(),
        _ => new GeneralizedJensenShannonLoss(),
    };

    private static void ShouldReject(Action forward, string parameter, string message) =>
        forward.Should().Throw<ArgumentException>().Where(e => e.ParamName == parameter).WithMessage(message);

    [Theory]
    [MemberData(nameof(Losses))]
    public void Vocabulary_size_mismatch_names_both_shapes(string name)
    {
        using var scope = NewDisposeScope();
        ShouldReject(() => Create(name).forward(zeros(2, 3, 10), zeros(2, 3, 12)), "teacherLogits",
            "studentLogits has shape [2, 3, 10] but teacherLogits has shape [2, 3, 12]; expected the same shape (vocabulary size differs: 10 vs 12).*");
    }

    [Theory]
    [MemberData(nameof(Losses))]
    public void Row_shape_and_rank_mismatches_are_rejected(string name)
    {
        using var scope = NewDisposeScope();
        ShouldReject(() => Create(name).forward(zeros(4, 10), zeros(2, 2, 10)), "teacherLogits",
            "studentLogits has shape [4, 10] but teacherLogits has shape [2, 2, 10]; expected the same shape.*");
        ShouldReject(() => Create(name).forward(zeros(10), zeros(10)), "studentLogits",
            "studentLogits must be logits of shape [N, C] (one row per example) or [B, S, C] (one row per token); got rank 1 with shape [10].*");
        ShouldReject(() => Create(name).forward(zeros(1, 2, 3, 4), zeros(1, 2, 3, 4)), "studentLogits", "*got rank 4 with shape [1, 2, 3, 4].*");
    }

    [Theory]
    [MemberData(nameof(Losses))]
    public void Integer_logits_are_rejected(string name)
    {
        using var scope = NewDisposeScope();
        ShouldReject(() => Create(name).forward(zeros(new long[] { 2, 3 }, dtype: ScalarType.Int32), zeros(2, 3)), "studentLogits",
            "studentLogits must be a floating-point tensor (float16, bfloat16, float32 or float64); got Int32 with shape [2, 3].*");
        ShouldReject(() => Create(name).forward(zeros(2, 3), zeros(new long[] { 2, 3 }, dtype: ScalarType.Int64)), "teacherLogits",
            "teacherLogits must be a floating-point tensor*got Int64*");
    }

    [Theory]
    [MemberData(nameof(Losses))]
    public void Mask_and_labels_of_the_wrong_shape_or_type_are_rejected(string name)
    {
        using var scope = NewDisposeScope();
        Tensor logits = zeros(2, 3, 5);
        ShouldReject(() => Create(name).forward(logits, logits, ones([2, 4], dtype: ScalarType.Bool)), "mask",
            "mask must have one entry per row, shape [2, 3]; got shape [2, 4].*");
        ShouldReject(() => Create(name).forward(logits, logits, ones(2, 3)), "mask",
            "mask must be bool (true = keep) or an integer 0/1 tensor; got Float32.*");
        ShouldReject(() => Create(name).forward(logits, logits, null, zeros([6], dtype: ScalarType.Int64)), "labels",
            "labels must have one entry per row, shape [2, 3]; got shape [6].*");
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void Temperatures_that_are_not_finite_and_positive_are_rejected(double temperature)
    {
        var constructors = new Func<LogitDistillationLoss>[]
        {
            () => new SoftTargetKLLoss(temperature), () => new ReverseKLLoss(temperature), () => new GeneralizedJensenShannonLoss(0.5, temperature),
        };
        foreach (var create in constructors)
        {
            create.Should().Throw<ArgumentOutOfRangeException>().Where(e => e.ParamName == "temperature")
                .WithMessage($"temperature must be a finite number greater than 0; got {temperature}.*");
        }
    }

    [Fact]
    public void Inputs_on_different_devices_are_rejected_naming_both()
    {
        using var scope = NewDisposeScope();
        Tensor onMeta = zeros(2, 5, device: new Device(DeviceType.META));

        ShouldReject(() => new SoftTargetKLLoss().forward(zeros(2, 5), onMeta), "teacherLogits",
            "studentLogits is on cpu but teacherLogits is on meta*; move both to one device.*");
    }
}
