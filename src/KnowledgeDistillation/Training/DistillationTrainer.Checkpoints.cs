using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

// Starting fresh or resuming, and writing checkpoints.
public sealed partial class DistillationTrainer<TInput>
{
    /// <summary>A fresh run (seeded), or one restored from the checkpoint ResumeFrom names; also the first-batch rows that checkpoint recorded.</summary>
    private (TrainingRun Run, long? ExpectedFirstRows) StartOrResume(long totalSteps)
    {
        if (_options.ResumeFrom is not null || _options.ResumeFromLatest)
        {
            VerifiedCheckpoint? checkpoint;
            if (_options.ResumeFromLatest)
            {
                checkpoint = CheckpointStore.Latest(_options.CheckpointDirectory!, _logger);
                if (checkpoint is null) _logger.LogInformation("ResumeFromLatest: {Directory} holds no checkpoint yet, so this is a fresh run", _options.CheckpointDirectory);
            }
            else
            {
                string resumeFrom = _options.ResumeFrom!;
                if (!Directory.Exists(resumeFrom)) throw new DirectoryNotFoundException($"ResumeFrom = {resumeFrom}: no such checkpoint folder.");
                checkpoint = CheckpointStore.Verify(resumeFrom);
            }
            if (checkpoint is not null)
            {
                TrainerState state = CheckpointStore.Restore(checkpoint, _student.Module, _objective, _optimizer, _createOptimizer, _trainable,
                    CurrentSettings(totalSteps, null), _logger);
                _logger.LogInformation("Resuming from {Checkpoint} at step {Step}", checkpoint.Path, state.Step);
                return (TrainingRun.ResumedFrom(state), checkpoint.Manifest.Settings.MicroBatchRows);
            }
        }
        if (_options.Seed is long seed) manual_seed(seed);
        return (TrainingRun.Fresh(), null);
    }

    private CheckpointSettings CurrentSettings(long totalSteps, long? firstRows) => new(totalSteps, _options.MaxSteps, _options.Epochs,
        _options.GradientAccumulationSteps, firstRows, _options.LearningRate, _options.WarmupSteps, _options.Decay.ToString(), _options.WeightDecay,
        _options.MaxGradientNorm, _objective.Terms.Select(t => t.Name).ToArray());

    private static void RequireSameBatching(long? expected, long? actual)
    {
        if (expected is long e && actual is long a && e != a)
        {
            throw new InvalidOperationException(
                $"The checkpoint was written while the epoch's first micro-batch had {e} rows; on resume it has {a}. The data or batch size changed, so the saved " +
                "data position no longer points at the same examples. Resume with the data the run was started with, or start a new run.");
        }
    }

    private void RemoveIncompleteCheckpointWrites()
    {
        if (_options.CheckpointDirectory is null) return;
        foreach (string stale in Checkpoints.RemoveIncompleteWrites(_options.CheckpointDirectory))
        {
            _logger.LogWarning(stale.Contains(CheckpointStore.AsideMarker, StringComparison.Ordinal)
                ? "Resolved {Folder}: a checkpoint set aside by a write of the same step that an earlier run did not finish (put back unless the new one was in place)"
                : "Removed {Folder}: a checkpoint write that an earlier run did not finish", stale);
        }
    }

    private string? Checkpoint(TrainingRun run, long totalSteps, IReadOnlyList<IDistillationCallback> callbacks)
    {
        if (_options.CheckpointDirectory is null) return null;
        TrainerState state = run.Snapshot(); // before any callback runs, so the saved RNG is the one training continues with
        string target = Path.Combine(_options.CheckpointDirectory, CheckpointStore.Prefix + run.Step.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (IDistillationCallback callback in callbacks) callback.OnCheckpointStarting(run.Step, target);
        string path = CheckpointStore.Write(_options.CheckpointDirectory, _options.KeepCheckpoints, _student.Module, _objective, _optimizer, state,
            CurrentSettings(totalSteps, run.EpochFirstRows), _logger);
        _logger.LogInformation("Checkpoint written: {Path}", path);
        foreach (IDistillationCallback callback in callbacks) callback.OnCheckpoint(path);
        return path;
    }
}
