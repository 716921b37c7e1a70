using System.Globalization;

namespace KnowledgeDistillation.Training;

/// <summary>
/// The settings a checkpoint was written under. On resume each is compared with the run's own: a difference that
/// breaks bit-exact resume (how micro-batches form a step, which terms the objective has, the optimizer, the batch
/// size) is an error; one that only changes the plan from here on (steps, learning-rate schedule, clipping) is a
/// warning.
/// </summary>
/// <param name="PlannedSteps">The total steps the run was planned for.</param>
/// <param name="MaxSteps">The MaxSteps option.</param>
/// <param name="Epochs">The Epochs option.</param>
/// <param name="GradientAccumulationSteps">Micro-batches per step.</param>
/// <param name="MicroBatchRows">Rows (first dimension of the labels, else the mask) of the run's first micro-batch; null when unknown.</param>
/// <param name="LearningRate">Peak learning rate.</param>
/// <param name="WarmupSteps">Warm-up steps.</param>
/// <param name="Decay">Decay after warm-up.</param>
/// <param name="WeightDecay">AdamW's weight decay (the default optimizer's).</param>
/// <param name="MaxGradientNorm">Clipping norm.</param>
/// <param name="ObjectiveTerms">The objective's term names, in order.</param>
internal sealed record CheckpointSettings(
    long PlannedSteps,
    long? MaxSteps,
    int Epochs,
    int GradientAccumulationSteps,
    long? MicroBatchRows,
    double LearningRate,
    int WarmupSteps,
    string Decay,
    double WeightDecay,
    double? MaxGradientNorm,
    IReadOnlyList<string> ObjectiveTerms)
{
    /// <summary>The differences from <paramref name="saved"/> that break bit-exact resume.</summary>
    public IEnumerable<string> BreakingDifferences(CheckpointSettings saved)
    {
        if (GradientAccumulationSteps != saved.GradientAccumulationSteps)
        {
            yield return Difference(nameof(GradientAccumulationSteps), saved.GradientAccumulationSteps, GradientAccumulationSteps,
                "the saved data position counts micro-batches of the old grouping");
        }
        if (!ObjectiveTerms.SequenceEqual(saved.ObjectiveTerms))
        {
            yield return Difference("objective terms", string.Join(", ", saved.ObjectiveTerms), string.Join(", ", ObjectiveTerms),
                "the saved objective state and term schedules belong to the old terms");
        }
        if (MicroBatchRows is long rows && saved.MicroBatchRows is long savedRows && rows != savedRows)
        {
            yield return Difference("micro-batch size (rows)", savedRows, rows, "the saved data position counts micro-batches of the old size");
        }
    }

    /// <summary>The differences from <paramref name="saved"/> that only change the plan from the resumed step on.</summary>
    public IEnumerable<string> PlanDifferences(CheckpointSettings saved)
    {
        if (PlannedSteps != saved.PlannedSteps || MaxSteps != saved.MaxSteps || Epochs != saved.Epochs)
        {
            yield return Difference("planned steps (MaxSteps / Epochs)", $"{saved.PlannedSteps} ({saved.MaxSteps?.ToString(CultureInfo.InvariantCulture) ?? "null"} / {saved.Epochs})",
                $"{PlannedSteps} ({MaxSteps?.ToString(CultureInfo.InvariantCulture) ?? "null"} / {Epochs})", "the learning-rate schedule and term schedules are recomputed for the new total");
        }
        if (LearningRate != saved.LearningRate) yield return Difference(nameof(LearningRate), saved.LearningRate, LearningRate, "later steps use the new peak");
        if (WarmupSteps != saved.WarmupSteps) yield return Difference(nameof(WarmupSteps), saved.WarmupSteps, WarmupSteps, "the schedule changes");
        if (Decay != saved.Decay) yield return Difference(nameof(Decay), saved.Decay, Decay, "the schedule changes");
        if (WeightDecay != saved.WeightDecay) yield return Difference(nameof(WeightDecay), saved.WeightDecay, WeightDecay, "the resumed optimizer keeps the saved value; a new optimizer would use the new one");
        if (MaxGradientNorm != saved.MaxGradientNorm) yield return Difference(nameof(MaxGradientNorm), saved.MaxGradientNorm, MaxGradientNorm, "later steps clip differently");
    }

    private static string Difference(string name, object? saved, object? now, string consequence) =>
        string.Create(CultureInfo.InvariantCulture, $"{name} was {saved ?? "null"} when the checkpoint was written and is {now ?? "null"} now ({consequence})");
}
