namespace CnnMethods;

/// <summary>The sizes of a run.</summary>
internal sealed record Settings(int TrainingImages, int TestImages, int TeacherEpochs, int StudentEpochs, int Seeds)
{
    /// <summary>All 60,000 training and 10,000 test images; three seeds per method.</summary>
    public static Settings Full { get; } = new(TrainingImages: 60_000, TestImages: 10_000, TeacherEpochs: 8, StudentEpochs: 10, Seeds: 3);

    /// <summary>Under two minutes: every method once, on a few thousand images.</summary>
    public static Settings Quick { get; } = new(TrainingImages: 5_000, TestImages: 2_000, TeacherEpochs: 2, StudentEpochs: 2, Seeds: 1);
}
