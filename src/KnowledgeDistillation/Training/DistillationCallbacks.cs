namespace KnowledgeDistillation.Training;

/// <summary>Lets a callback stop training at the next step boundary.</summary>
public sealed class TrainerControl
{
    /// <summary>Set to stop after the current step.</summary>
    public bool ShouldStop { get; set; }
}

/// <summary>Hooks into a training run. Every method has an empty default: implement what you need.</summary>
public interface IDistillationCallback
{
    /// <summary>After every optimizer step.</summary>
    void OnStepEnd(StepReport report, TrainerControl control)
    {
    }

    /// <summary>After every evaluation.</summary>
    void OnEvaluation(EvaluationReport report, TrainerControl control)
    {
    }

    /// <summary>
    /// Before a checkpoint is written (e.g. to check free disk space, or to pause something that reads the folder).
    /// An exception thrown here stops training before anything is written.
    /// </summary>
    /// <param name="step">The step being saved.</param>
    /// <param name="path">The folder the checkpoint will have once written.</param>
    void OnCheckpointStarting(long step, string path)
    {
    }

    /// <summary>After a checkpoint folder has been written, flushed and renamed into place.</summary>
    void OnCheckpoint(string path)
    {
    }

    /// <summary>When the run ends (completed, cancelled or stopped).</summary>
    void OnTrainingEnd(TrainingResult result)
    {
    }
}

/// <summary>Stops training when the evaluation metric has not improved by <c>minDelta</c> for <c>patience</c> evaluations.</summary>
public sealed class EarlyStoppingCallback : IDistillationCallback
{
    private readonly int _patience;
    private readonly double _minDelta;
    private double? _best;
    private double? _bestMetric;
    private int _stale;

    /// <summary>Creates the callback.</summary>
    /// <param name="patience">Evaluations without improvement before stopping (at least 1).</param>
    /// <param name="minDelta">The smallest change that counts as an improvement.</param>
    public EarlyStoppingCallback(int patience = 3, double minDelta = 0)
    {
        if (patience < 1) throw new ArgumentOutOfRangeException(nameof(patience), patience, "patience must be at least 1.");
        if (!(minDelta >= 0)) throw new ArgumentOutOfRangeException(nameof(minDelta), minDelta, "minDelta must be 0 or more.");
        _patience = patience;
        _minDelta = minDelta;
    }

    /// <summary>The best metric seen so far (accuracy or perplexity).</summary>
    public double? Best => _bestMetric;

    /// <inheritdoc />
    public void OnEvaluation(EvaluationReport report, TrainerControl control)
    {
        double value = report.HigherIsBetter ? report.StudentMetric : -report.StudentMetric;
        if (_best is null || value > _best.Value + _minDelta)
        {
            _best = value;
            _bestMetric = report.StudentMetric;
            _stale = 0;
            return;
        }
        if (++_stale >= _patience) control.ShouldStop = true;
    }
}
