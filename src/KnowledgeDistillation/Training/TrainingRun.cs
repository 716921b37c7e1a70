using KnowledgeDistillation.Models;
namespace KnowledgeDistillation.Training;

/// <summary>
/// Where a training loop stands — step, epoch, micro-batches consumed in the epoch, skipped steps, the RNG state the
/// epoch started from — and, after a resume, what remains to be replayed: the micro-batches the interrupted run had
/// already consumed in its epoch are skipped, and then the RNG is put back exactly where that run left it.
/// </summary>
internal sealed class TrainingRun
{
    private TrainerState? _resume;
    private long _skipInEpoch;
    private string _epochStartRng = "";

    private TrainingRun(TrainerState state, TrainerState? resume)
    {
        Step = state.Step;
        Epoch = state.Epoch;
        SkippedSteps = state.SkippedSteps;
        _skipInEpoch = state.MicroBatchesIntoEpoch;
        _resume = resume;
    }

    public static TrainingRun Fresh() => new(TrainerState.Fresh, null);

    public static TrainingRun ResumedFrom(TrainerState state) => new(state, state);

    public long Step { get; private set; }

    public int Epoch { get; private set; }

    public long SkippedSteps { get; private set; }

    /// <summary>Micro-batches of the current epoch consumed so far (skipped on resume, or trained on).</summary>
    public long MicroBatchesIntoEpoch { get; private set; }

    /// <summary>Rows of the current epoch's first micro-batch (recorded in checkpoints to detect a changed batch size).</summary>
    public long? EpochFirstRows { get; private set; }

    public bool IsResuming => _resume is not null;

    /// <summary>Starts an epoch: replays the interrupted epoch's starting RNG on resume, else records the current one.</summary>
    public void BeginEpoch()
    {
        MicroBatchesIntoEpoch = 0;
        EpochFirstRows = null;
        _epochStartRng = _resume?.EpochStartRngState ?? CheckpointStore.CaptureRng();
        if (_resume is not null) CheckpointStore.RestoreRng(_epochStartRng);
    }

    /// <summary>Notes the rows of the epoch's first micro-batch.</summary>
    public void SawMicroBatch(long? rows) => EpochFirstRows ??= rows;

    /// <summary>
    /// Called before the next micro-batch is drawn from the data: once the micro-batches the interrupted run had
    /// consumed are replayed, the RNG is restored here — before the data produces the first new micro-batch, because
    /// data generated lazily (a <c>yield</c> iterator drawing from torch's RNG) draws it while producing the batch.
    /// </summary>
    public void BeforeNextMicroBatch()
    {
        if (MicroBatchesIntoEpoch >= _skipInEpoch) FinishResume();
    }

    /// <summary>The micro-batches of this epoch still to be passed over on resume (0 when none).</summary>
    public long PendingSkip => _resume is null ? 0 : Math.Max(0, _skipInEpoch - MicroBatchesIntoEpoch);

    /// <summary>The data started past the consumed micro-batches itself (<see cref="IResumableData{TInput}"/>): count them as passed.</summary>
    public void PassedOverWithoutReplay() => MicroBatchesIntoEpoch = Math.Max(MicroBatchesIntoEpoch, _skipInEpoch);

    /// <summary>True when the interrupted run had already trained on this micro-batch of the epoch: skip it.</summary>
    public bool AlreadyConsumed()
    {
        if (MicroBatchesIntoEpoch >= _skipInEpoch) return false;
        MicroBatchesIntoEpoch++;
        return true;
    }

    /// <summary>
    /// Throws when an epoch's data ended before the micro-batches the checkpoint says were consumed had been replayed:
    /// the data changed since the checkpoint was written, and continuing would train from the wrong position.
    /// </summary>
    public void RequireReplayComplete()
    {
        if (_resume is null || MicroBatchesIntoEpoch >= _skipInEpoch) return;
        throw new InvalidOperationException(
            $"The checkpoint says {_skipInEpoch} micro-batches of epoch {Epoch} had been consumed, but the data of that epoch has only {MicroBatchesIntoEpoch}: " +
            "the training data changed since the checkpoint was written. Resume with the same data, or start a new run.");
    }

    /// <summary>After the replayed micro-batches: the RNG continues exactly where the interrupted run left it.</summary>
    public void FinishResume()
    {
        if (_resume is null) return;
        CheckpointStore.RestoreRng(_resume.RngState);
        _resume = null;
    }

    public void CompleteStep(int microBatches, bool skipped)
    {
        Step++;
        MicroBatchesIntoEpoch += microBatches;
        if (skipped) SkippedSteps++;
    }

    public void NextEpoch()
    {
        Epoch++;
        _skipInEpoch = 0;
    }

    /// <summary>What a checkpoint written now restores.</summary>
    public TrainerState Snapshot() => new(Step, Epoch, MicroBatchesIntoEpoch, SkippedSteps, CheckpointStore.CaptureRng(), _epochStartRng);
}
