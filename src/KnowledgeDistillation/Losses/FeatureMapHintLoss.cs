using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// FitNets hints for CNNs (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015): a learned regressor maps the
/// student's (guided) feature map to the teacher's (hint) channels, and the loss is the mean squared error over the
/// example's elements, averaged over examples. The regressor is a 1×1 convolution with bias, registered as the
/// submodule <c>regressor</c> so it trains with the student; it exists when the channel counts differ (or when asked
/// for). RepDistiller's regressor is a 3×3 convolution with batch norm and ReLU; a 1×1 convolution is the linear map
/// the paper describes and adds no receptive field of its own. Spatial sizes must match. For hidden states
/// <c>[N, D]</c> or <c>[B, S, D]</c>, <see cref="HiddenStateMseLoss"/> with widths is the same hint with a linear regressor.
/// </summary>
public sealed class FeatureMapHintLoss : FeatureMapLoss
{
    private readonly Conv2d? regressor;

    /// <summary>Creates the loss.</summary>
    /// <param name="studentChannels">The student map's channels.</param>
    /// <param name="teacherChannels">The teacher map's channels.</param>
    /// <param name="alwaysRegress">Learn a regressor even when the channel counts are equal.</param>
    public FeatureMapHintLoss(long studentChannels, long teacherChannels, bool alwaysRegress = false) : base(nameof(FeatureMapHintLoss))
    {
        if (studentChannels <= 0) throw new ArgumentOutOfRangeException(nameof(studentChannels), studentChannels, $"studentChannels must be positive; got {studentChannels}.");
        if (teacherChannels <= 0) throw new ArgumentOutOfRangeException(nameof(teacherChannels), teacherChannels, $"teacherChannels must be positive; got {teacherChannels}.");
        StudentChannels = studentChannels;
        TeacherChannels = teacherChannels;
        if (alwaysRegress || studentChannels != teacherChannels) regressor = nn.Conv2d(studentChannels, teacherChannels, 1);
        RegisterComponents();
    }

    /// <summary>The student map's channels.</summary>
    public long StudentChannels { get; }

    /// <summary>The teacher map's channels.</summary>
    public long TeacherChannels { get; }

    /// <summary>The learned 1×1 regressor, or null when the channels match and none was asked for.</summary>
    public Conv2d? Regressor => regressor;

    /// <inheritdoc />
    protected override Tensor PerExample(Tensor student, Tensor teacher)
    {
        if (student.shape[1] != StudentChannels || teacher.shape[1] != TeacherChannels || student.shape[2] != teacher.shape[2] || student.shape[3] != teacher.shape[3])
        {
            throw new ArgumentException(
                $"FitNets hints need a student map [N, {StudentChannels}, H, W] and a teacher map [N, {TeacherChannels}, H, W] of the same H and W; " +
                $"got {Shapes.Describe(student.shape)} and {Shapes.Describe(teacher.shape)}.", "studentMap");
        }
        Tensor guided = regressor is null ? student : regressor.forward(student.to(regressor.weight!.dtype)).to(student.dtype);
        return (guided - teacher).square().flatten(1).mean([1]);
    }
}
