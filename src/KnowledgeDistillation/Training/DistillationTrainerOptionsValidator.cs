using KnowledgeDistillation.Runtime;
using Microsoft.Extensions.Options;

namespace KnowledgeDistillation.Training;

/// <summary>Validates <see cref="DistillationTrainerOptions"/>; every failure names the field, the rule and the value.</summary>
public sealed class DistillationTrainerOptionsValidator : IValidateOptions<DistillationTrainerOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, DistillationTrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        void Require(bool ok, string field, string rule, object? value)
        {
            if (!ok) failures.Add($"{field} {rule}; got {value ?? "null"}.");
        }

        Require(options.Epochs >= 1, nameof(options.Epochs), "must be at least 1", options.Epochs);
        Require(options.MaxSteps is null or >= 1, nameof(options.MaxSteps), "must be at least 1 when set", options.MaxSteps);
        Require(double.IsFinite(options.LearningRate) && options.LearningRate > 0, nameof(options.LearningRate), "must be a finite number greater than 0", options.LearningRate);
        Require(options.WarmupSteps >= 0, nameof(options.WarmupSteps), "cannot be negative", options.WarmupSteps);
        Require(Enum.IsDefined(options.Decay), nameof(options.Decay), "must be Constant, Linear or Cosine", options.Decay);
        Require(double.IsFinite(options.WeightDecay) && options.WeightDecay >= 0, nameof(options.WeightDecay), "must be a finite number, 0 or more", options.WeightDecay);
        Require(options.GradientAccumulationSteps >= 1, nameof(options.GradientAccumulationSteps), "must be at least 1", options.GradientAccumulationSteps);
        Require(options.MaxGradientNorm is null || (double.IsFinite(options.MaxGradientNorm.Value) && options.MaxGradientNorm > 0),
            nameof(options.MaxGradientNorm), "must be a finite number greater than 0, or null to turn clipping off", options.MaxGradientNorm);
        Require(DeviceSelection.IsValidName(options.Device), nameof(options.Device), "must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"", options.Device);
        Require(options.TeacherDevice is null || DeviceSelection.IsValidName(options.TeacherDevice), nameof(options.TeacherDevice),
            "must be null (the student's device), \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"", options.TeacherDevice);
        Require(options.EvaluationInterval >= 0, nameof(options.EvaluationInterval), "cannot be negative (0 = evaluate at the end only)", options.EvaluationInterval);
        Require(options.LoggingInterval >= 1, nameof(options.LoggingInterval), "must be at least 1", options.LoggingInterval);
        Require(options.CheckpointInterval >= 0, nameof(options.CheckpointInterval), "cannot be negative (0 = at the end only)", options.CheckpointInterval);
        Require(options.KeepCheckpoints >= 1, nameof(options.KeepCheckpoints), "must be at least 1", options.KeepCheckpoints);
        Require(options.CheckpointInterval == 0 || options.CheckpointDirectory is not null,
            nameof(options.CheckpointDirectory), "must be set when CheckpointInterval is", options.CheckpointDirectory);
        Require(!options.ResumeFromLatest || options.CheckpointDirectory is not null,
            nameof(options.ResumeFromLatest), "needs CheckpointDirectory", options.ResumeFromLatest);
        Require(!(options.ResumeFromLatest && options.ResumeFrom is not null),
            nameof(options.ResumeFrom), "must be null when ResumeFromLatest is true (give one or the other)", $"\"{options.ResumeFrom}\"");
        Require(!string.Equals(options.ResumeFrom, "latest", StringComparison.OrdinalIgnoreCase),
            nameof(options.ResumeFrom), "is a checkpoint folder; to resume from the newest checkpoint set ResumeFromLatest = true", $"\"{options.ResumeFrom}\"");
        Require(options.ResumeFrom is null || !string.IsNullOrWhiteSpace(options.ResumeFrom),
            nameof(options.ResumeFrom), "must be a checkpoint folder or null; an empty string is neither", $"\"{options.ResumeFrom}\"");
        if (options.CheckpointDirectory is { } directory && CheckpointDirectoryProblem(directory) is { } problem)
        {
            failures.Add($"{nameof(options.CheckpointDirectory)} {problem}; got \"{directory}\".");
        }
        Require(Enum.IsDefined(options.NonFiniteLoss), nameof(options.NonFiniteLoss), "must be Stop or SkipStep", options.NonFiniteLoss);
        Require(Enum.IsDefined(options.TeacherPrecision), nameof(options.TeacherPrecision), "must be Unchanged, BFloat16 or Float16", options.TeacherPrecision);

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>Throws <see cref="OptionsValidationException"/> listing every failure.</summary>
    public static void ThrowIfInvalid(DistillationTrainerOptions options)
    {
        ValidateOptionsResult result = new DistillationTrainerOptionsValidator().Validate(Options.DefaultName, options);
        if (result.Failed) throw new OptionsValidationException(Options.DefaultName, typeof(DistillationTrainerOptions), result.Failures);
    }

    /// <summary>Why a checkpoint folder cannot be used (checked before training runs, not after), or null.</summary>
    private static string? CheckpointDirectoryProblem(string directory)
    {
        if (string.IsNullOrWhiteSpace(directory)) return "must be a folder path, or null to write no checkpoints";
        if (directory.IndexOfAny(Path.GetInvalidPathChars()) >= 0 || directory.Contains('\0', StringComparison.Ordinal)) return "contains characters a path cannot hold";
        string full;
        try
        {
            full = Path.GetFullPath(directory);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return $"is not a valid path ({e.Message})";
        }
        if (File.Exists(full)) return "names an existing file, not a folder";
        for (string? parent = Path.GetDirectoryName(full); parent is not null; parent = Path.GetDirectoryName(parent))
        {
            if (File.Exists(parent)) return $"lies under {parent}, which is a file";
            if (Directory.Exists(parent)) break;
        }
        return null;
    }
}
