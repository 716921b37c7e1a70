using KnowledgeDistillation.Training;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>How the tests' trainer helpers say where to resume: a checkpoint folder, or <see cref="Latest"/> for <see cref="DistillationTrainerOptions.ResumeFromLatest"/>.</summary>
internal static class Resume
{
    /// <summary>Stands for "the newest checkpoint" in the helpers' resume argument (not a folder name).</summary>
    public const string Latest = "<newest checkpoint>";

    public static void Into(DistillationTrainerOptions options, string? resume)
    {
        if (resume == Latest) options.ResumeFromLatest = true;
        else options.ResumeFrom = resume;
    }
}
