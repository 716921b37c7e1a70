using KnowledgeDistillation.Objectives;

namespace FashionMnist;

/// <summary>One student's training: its width, how it learns, and whether it also sees the teacher-labelled blends.</summary>
internal sealed record StudentRun(string Student, int Hidden, string Training, DistillationObjective Objective, bool Blends);

/// <summary>One student's test errors over the seeds.</summary>
internal sealed record StudentResult(string Student, string Training, IReadOnlyList<int> Errors)
{
    public double Mean => Errors.Average();

    /// <summary>Sample standard deviation over the seeds (0 for one seed).</summary>
    public double Deviation => Errors.Count < 2 ? 0 : Math.Sqrt(Errors.Sum(e => (e - Mean) * (e - Mean)) / (Errors.Count - 1));

    /// <summary>Mean over seeds of (alone − this) / (alone − teacher): seed s of this run against seed s of the student alone.</summary>
    public double GapClosed(StudentResult alone, int teacherErrors) =>
        Errors.Zip(alone.Errors, (distilled, a) => (double)(a - distilled) / (a - teacherErrors)).Average();
}

/// <summary>
/// The sizes of a run: the default reproduces the README's table, every student over <see cref="Seeds"/> seeds (its
/// initialisation and batch order; the teacher and its transfer set are the same for all). <see cref="Quick"/>
/// checks the pipeline in under a minute in the low-data regime: a teacher trained briefly on all 60,000 images
/// teaches a 2x800 student that has 5,000 labelled images. It leaves out the 2x30 student, whose small gain needs
/// the full schedule to show.
/// </summary>
internal sealed record Settings(int TrainingImages, int TeacherEpochs, int Views, int StudentEpochs, int Seeds, bool TinyStudent = true)
{
    public static Settings Full { get; } = new(TrainingImages: 60_000, TeacherEpochs: 8, Views: 32, StudentEpochs: 80, Seeds: 3);

    public static Settings Quick { get; } = new(TrainingImages: 5_000, TeacherEpochs: 2, Views: 4, StudentEpochs: 30, Seeds: 1, TinyStudent: false);

    /// <summary>
    /// Each student alone on the hard labels, then distilled from the teacher's logits on the training images and
    /// their blends. The wide student imitates a softened teacher (T = 4, 0.9 soft + 0.1 hard, as Hinton et al.);
    /// the 2x30 student is too small to imitate much of a CNN, so it keeps more weight on the labels at a lower T.
    /// </summary>
    public IEnumerable<StudentRun> Runs
    {
        get
        {
            yield return new("2x800", 800, "alone (hard labels)", DistillationObjective.Create().HardTargets(1.0).Build(), Blends: false);
            yield return new("2x800", 800, "distilled, T = 4", DistillationObjective.Create().SoftTargets(0.9, temperature: 4.0).HardTargets(0.1).Build(), Blends: true);
            if (!TinyStudent) yield break;
            yield return new("2x30", 30, "alone (hard labels)", DistillationObjective.Create().HardTargets(1.0).Build(), Blends: false);
            yield return new("2x30", 30, "distilled, T = 2", DistillationObjective.Create().SoftTargets(0.5, temperature: 2.0).HardTargets(0.5).Build(), Blends: true);
        }
    }
}
