namespace OnnxTeacherSample;

/// <summary>The sizes of a run: the full experiment, or a quick one for CI.</summary>
internal sealed record Settings(int Labelled, int Validation, int Transfer, int Test, int DistillEpochs, int[] LabelEpochs, int Seeds, int TeacherSpeedImages, int StudentSpeedImages)
{
    /// <summary>1,000 labels and the 10,000 test images, as the issue asks; 20,000 unlabelled training images as the transfer set.</summary>
    public static Settings Full { get; } = new(Labelled: 1000, Validation: 2000, Transfer: 20_000, Test: 10_000, DistillEpochs: 12, LabelEpochs: [15, 40], Seeds: 3,
        TeacherSpeedImages: 100, StudentSpeedImages: 2000);

    /// <summary>Under two minutes: fewer images everywhere, one seed.</summary>
    public static Settings Quick { get; } = new(Labelled: 300, Validation: 200, Transfer: 700, Test: 400, DistillEpochs: 2, LabelEpochs: [5, 10], Seeds: 1,
        TeacherSpeedImages: 10, StudentSpeedImages: 200);
}
