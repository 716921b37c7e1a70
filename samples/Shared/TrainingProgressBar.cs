using KnowledgeDistillation.Training;
using Spectre.Console;

namespace Samples.Shared;

/// <summary>A Spectre.Console progress bar around a training run (linked into the samples that train with the trainer).</summary>
internal static class TrainingProgressBar
{
    /// <summary>Runs <paramref name="train"/>, which reports its steps to the progress it is given, under a bar named <paramref name="name"/>.</summary>
    public static void Show(string name, long steps, Action<IProgress<TrainingProgress>> train) =>
        AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn()).Start(ctx =>
        {
            ProgressTask task = ctx.AddTask(name, maxValue: steps);
            train(new TaskProgress(task));
        });

    /// <summary>Sets the bar synchronously (unlike <see cref="Progress{T}"/>, which posts to a synchronisation context).</summary>
    private sealed class TaskProgress(ProgressTask task) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => task.Value = value.Step;
    }
}
