using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace KnowledgeDistillation.Training;

/// <summary>Validates <see cref="DistillationTrainerOptions"/>; every failure names the field, the rule and the value.</summary>
public sealed partial class DistillationTrainerOptionsValidator : IValidateOptions<DistillationTrainerOptions>
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
        Require(options.Device is not null && DevicePattern().IsMatch(options.Device.Trim().ToLowerInvariant()),
            nameof(options.Device), "must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"", options.Device);
        Require(options.EvaluationInterval >= 0, nameof(options.EvaluationInterval), "cannot be negative (0 = evaluate at the end only)", options.EvaluationInterval);
        Require(options.LoggingInterval >= 1, nameof(options.LoggingInterval), "must be at least 1", options.LoggingInterval);
        Require(options.CheckpointInterval >= 0, nameof(options.CheckpointInterval), "cannot be negative (0 = at the end only)", options.CheckpointInterval);
        Require(options.KeepCheckpoints >= 1, nameof(options.KeepCheckpoints), "must be at least 1", options.KeepCheckpoints);
        Require(options.CheckpointInterval == 0 || options.CheckpointDirectory is not null,
            nameof(options.CheckpointDirectory), "must be set when CheckpointInterval is", options.CheckpointDirectory);
        Require(options.ResumeFrom != "latest" || options.CheckpointDirectory is not null,
            nameof(options.ResumeFrom), "\"latest\" needs CheckpointDirectory", options.ResumeFrom);
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

    [GeneratedRegex(@"^(auto|cpu|cuda|cuda:\d+)$")]
    private static partial Regex DevicePattern();
}
