namespace KnowledgeDistillation.Training;

/// <summary>One optimizer step.</summary>
/// <param name="Step">Steps completed (1 after the first).</param>
/// <param name="Epoch">The epoch (0-based) the step's data came from.</param>
/// <param name="Loss">The objective's total, averaged over the step's micro-batches with token weights.</param>
/// <param name="Terms">Each term's unweighted value, averaged the same way.</param>
/// <param name="LearningRate">The learning rate the step used.</param>
/// <param name="GradientNorm">The global gradient norm before clipping.</param>
/// <param name="Skipped">True when a non-finite loss or gradient made the step skip its update.</param>
/// <param name="Rows">Real (kept) rows or tokens across the step's micro-batches; null when batches carry no labels or mask.</param>
public sealed record StepReport(long Step, int Epoch, double Loss, IReadOnlyDictionary<string, double> Terms, double LearningRate, double GradientNorm, bool Skipped, long? Rows);

/// <summary>Student and teacher on the evaluation data.</summary>
/// <param name="Step">Steps completed when evaluated.</param>
/// <param name="MetricName">"accuracy" for <c>[N, C]</c> logits, "perplexity" for <c>[B, S, V]</c>.</param>
/// <param name="StudentMetric">The student's accuracy or perplexity.</param>
/// <param name="TeacherMetric">The teacher's (the first teacher's), computed once per trainer; NaN for a trainer without teachers.</param>
/// <param name="StudentLoss">The student's mean cross-entropy over kept rows.</param>
/// <param name="TeacherLoss">The teacher's.</param>
/// <param name="Retention">Student quality / teacher quality: accuracy ratio, or teacher perplexity / student perplexity.</param>
public sealed record EvaluationReport(long Step, string MetricName, double StudentMetric, double TeacherMetric, double StudentLoss, double TeacherLoss, double Retention)
{
    /// <summary>Whether a higher <see cref="StudentMetric"/> is better (accuracy) or lower (perplexity).</summary>
    public bool HigherIsBetter => MetricName == "accuracy";
}

/// <summary>Progress for <see cref="IProgress{T}"/>.</summary>
/// <param name="Step">Steps completed.</param>
/// <param name="TotalSteps">Steps planned.</param>
/// <param name="Loss">The last logged step's loss.</param>
public sealed record TrainingProgress(long Step, long TotalSteps, double Loss);

/// <summary>How a run ended.</summary>
/// <param name="Steps">Steps completed (including resumed ones).</param>
/// <param name="SkippedSteps">Steps skipped for a non-finite loss or gradient.</param>
/// <param name="Cancelled">Stopped by the cancellation token at a step boundary.</param>
/// <param name="StoppedEarly">Stopped by a callback (e.g. early stopping).</param>
/// <param name="LastStep">The last step's report, or null if no step ran.</param>
/// <param name="LastEvaluation">The last evaluation, or null.</param>
/// <param name="LastCheckpoint">The newest checkpoint folder written, or null.</param>
public sealed record TrainingResult(long Steps, long SkippedSteps, bool Cancelled, bool StoppedEarly, StepReport? LastStep, EvaluationReport? LastEvaluation, string? LastCheckpoint);

/// <summary>Thrown under <see cref="NonFiniteLossPolicy.Stop"/> when the loss or gradient is NaN or infinite; the weights were not updated.</summary>
public sealed class NonFiniteLossException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="step">The 0-based step that failed.</param>
    /// <param name="term">The first term (in micro-batch, then term order) that went non-finite, or "gradient".</param>
    /// <param name="value">Its value.</param>
    /// <param name="epoch">The epoch of the step, or -1 when unknown.</param>
    /// <param name="microBatchInEpoch">The 0-based position in its epoch of the micro-batch where the term went non-finite; null for the gradient.</param>
    public NonFiniteLossException(long step, string term, double value, int epoch = -1, long? microBatchInEpoch = null)
        : base($"The {(term == "gradient" ? "gradient norm" : $"objective term \"{term}\"")} was {value} at step {step + 1}" +
               (microBatchInEpoch is long m ? $" (epoch {epoch}, micro-batch {m} of the epoch, counting from 0)" : epoch >= 0 ? $" (epoch {epoch})" : "") +
               "; the weights were not updated. Lower the learning rate, clip gradients, check the inputs, or set NonFiniteLoss = SkipStep.")
    {
        Step = step;
        Term = term;
        Value = value;
        Epoch = epoch;
        MicroBatchInEpoch = microBatchInEpoch;
    }

    /// <summary>The 0-based step that failed.</summary>
    public long Step { get; }

    /// <summary>The term that went non-finite first, or "gradient".</summary>
    public string Term { get; }

    /// <summary>The non-finite value.</summary>
    public double Value { get; }

    /// <summary>The epoch of the failed step, or -1 when unknown.</summary>
    public int Epoch { get; }

    /// <summary>The 0-based position in its epoch of the micro-batch where the term first went non-finite; null for a non-finite gradient.</summary>
    public long? MicroBatchInEpoch { get; }
}
