using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

/// <summary>
/// Trains a student to imitate one or more frozen teachers under a <see cref="DistillationObjective"/>, with
/// gradient accumulation normalised by real tokens, clipping, a warm-up/decay learning-rate schedule, evaluation,
/// callbacks, atomic checkpoints and bit-exact resume. See docs/trainer.md.
/// </summary>
/// <typeparam name="TInput">What the models consume (a <see cref="Tensor"/>, a <see cref="TokenBatch"/>, or your own type).</typeparam>
public sealed class DistillationTrainer<TInput>
{
    private readonly IReadOnlyList<IDistillationModel<TInput>> _teachers;
    private readonly IDistillationModel<TInput> _student;
    private readonly DistillationObjective _objective;
    private readonly DistillationTrainerOptions _options;
    private readonly ILogger _logger;
    private readonly OptimizerHelper _optimizer;
    private readonly Parameter[] _trainable;
    private Evaluator.Quality? _teacherQuality;

    /// <summary>Creates a trainer with one teacher.</summary>
    public DistillationTrainer(IDistillationModel<TInput> teacher, IDistillationModel<TInput> student, DistillationObjective objective,
        DistillationTrainerOptions options, ILogger? logger = null, Func<IEnumerable<Parameter>, OptimizerHelper>? optimizer = null)
        : this([teacher ?? throw new ArgumentNullException(nameof(teacher))], student, objective, options, logger, optimizer)
    {
    }

    /// <summary>Creates a trainer with several teachers (see <see cref="DistillationObjectiveBuilder.TeacherWeights"/>).</summary>
    /// <param name="teachers">The teachers; put in eval mode, frozen, moved to the device and optionally cast. May be empty when no term
    /// reads a teacher — training a teacher, or the "student alone" control — in which case evaluation reports no teacher metric.</param>
    /// <param name="student">The student.</param>
    /// <param name="objective">What to minimise; its learnable parts are trained with the student.</param>
    /// <param name="options">Validated settings.</param>
    /// <param name="logger">Where progress and decisions are logged.</param>
    /// <param name="optimizer">Builds the optimizer over the trainable parameters; default AdamW with the options' learning rate and weight decay.</param>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException">The options are invalid; the message names each bad field.</exception>
    public DistillationTrainer(IReadOnlyList<IDistillationModel<TInput>> teachers, IDistillationModel<TInput> student, DistillationObjective objective,
        DistillationTrainerOptions options, ILogger? logger = null, Func<IEnumerable<Parameter>, OptimizerHelper>? optimizer = null)
    {
        ArgumentNullException.ThrowIfNull(teachers);
        _student = student ?? throw new ArgumentNullException(nameof(student));
        _objective = objective ?? throw new ArgumentNullException(nameof(objective));
        if (teachers.Count == 0 && objective.UsesTeachers)
        {
            throw new ArgumentException("Give at least one teacher: terms of the objective read teacher outputs. (Without teachers, only label-only objectives can run.)", nameof(teachers));
        }
        _options = options ?? throw new ArgumentNullException(nameof(options));
        DistillationTrainerOptionsValidator.ThrowIfInvalid(options);
        _teachers = teachers.ToArray();
        _logger = logger ?? NullLogger.Instance;

        Device = DeviceSelection.Resolve(options.Device);
        _logger.LogInformation("Distillation device: {Device} (requested \"{Requested}\", CUDA available: {Cuda})", Device, options.Device, cuda.is_available());
        foreach (IDistillationModel<TInput> teacher in _teachers) FreezeTeacher(teacher.Module);
        _student.Module.to(Device);
        _objective.to(Device);
        _trainable = _student.Module.parameters().Concat(_objective.parameters()).Where(p => p.requires_grad).ToArray();
        _optimizer = optimizer?.Invoke(_trainable) ?? optim.AdamW(_trainable, options.LearningRate, weight_decay: options.WeightDecay);
    }

    /// <summary>The device the models run on.</summary>
    public Device Device { get; }

    /// <summary>The optimizer (AdamW unless one was supplied).</summary>
    public OptimizerHelper Optimizer => _optimizer;

    /// <summary>Trains on the same data every epoch.</summary>
    public TrainingResult Train(IEnumerable<DistillationBatch<TInput>> data, IEnumerable<DistillationBatch<TInput>>? evaluationData = null,
        IReadOnlyList<IDistillationCallback>? callbacks = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        return Train(_ => data, evaluationData, callbacks, progress, cancellationToken);
    }

    /// <summary>
    /// Trains on <paramref name="dataForEpoch"/>(epoch) each epoch (e.g. reshuffled per epoch). For bit-exact
    /// resume the data of an epoch must be reproducible: fixed, or drawn from torch's RNG, which checkpoints restore.
    /// </summary>
    public TrainingResult Train(Func<int, IEnumerable<DistillationBatch<TInput>>> dataForEpoch, IEnumerable<DistillationBatch<TInput>>? evaluationData = null,
        IReadOnlyList<IDistillationCallback>? callbacks = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataForEpoch);
        callbacks ??= [];
        var control = new TrainerControl();
        int accumulation = _options.GradientAccumulationSteps;
        long totalSteps = _options.MaxSteps ?? _options.Epochs * StepsPerEpoch(dataForEpoch(0), accumulation);

        TrainerState state = StartOrResume();
        long step = state.Step, skippedSteps = state.SkippedSteps, resumeSkip = state.MicroBatchesIntoEpoch;
        int epoch = state.Epoch;
        bool resuming = _options.ResumeFrom is not null && step > 0;
        StepReport? lastStep = null;
        EvaluationReport? lastEvaluation = null;
        string? lastCheckpoint = null;
        bool cancelled = false;

        _student.Module.train();
        _objective.train();
        while (step < totalSteps && !control.ShouldStop && !cancelled)
        {
            string epochStartRng = resuming ? state.EpochStartRngState : CheckpointStore.CaptureRng();
            if (resuming) CheckpointStore.RestoreRng(state.EpochStartRngState);
            long consumed = 0;
            var pending = new List<DistillationBatch<TInput>>(accumulation);
            using IEnumerator<DistillationBatch<TInput>> batches = dataForEpoch(epoch).GetEnumerator();
            bool any = false;
            while (step < totalSteps && !control.ShouldStop)
            {
                bool more = batches.MoveNext();
                if (more)
                {
                    any = true;
                    if (consumed < resumeSkip)
                    {
                        consumed++;
                        BatchPlacement.Release(batches.Current);
                        continue;
                    }
                    if (resuming)
                    {
                        CheckpointStore.RestoreRng(state.RngState); // after skipping: the RNG is exactly where the interrupted run left it
                        resuming = false;
                    }
                    pending.Add(batches.Current);
                    if (pending.Count < accumulation) continue;
                }
                if (pending.Count == 0) break;

                lastStep = RunStep(pending, step, epoch, totalSteps);
                consumed += pending.Count;
                pending.ForEach(BatchPlacement.Release);
                pending.Clear();
                step++;
                if (lastStep.Skipped) skippedSteps++;
                foreach (IDistillationCallback callback in callbacks) callback.OnStepEnd(lastStep, control);
                if (step % _options.LoggingInterval == 0 || step == totalSteps)
                {
                    _logger.LogInformation("step {Step}/{Total} loss {Loss:0.#####} lr {LearningRate:0.####E+0} {Terms}", step, totalSteps, lastStep.Loss,
                        lastStep.LearningRate, string.Join(" ", lastStep.Terms.Select(t => $"{t.Key} {t.Value:0.#####}")));
                    progress?.Report(new TrainingProgress(step, totalSteps, lastStep.Loss));
                }
                if (evaluationData is not null && _options.EvaluationInterval > 0 && step % _options.EvaluationInterval == 0 && step < totalSteps)
                {
                    lastEvaluation = Evaluate(evaluationData, step, callbacks, control);
                }

                var position = new TrainerState(step, epoch, consumed, skippedSteps, "", epochStartRng);
                if (cancellationToken.IsCancellationRequested)
                {
                    cancelled = true;
                    lastCheckpoint = Checkpoint(position, callbacks) ?? lastCheckpoint;
                    _logger.LogWarning("Cancelled at step {Step}; {Checkpoint}", step, lastCheckpoint is null ? "no CheckpointDirectory, so nothing was saved" : $"resume from {lastCheckpoint}");
                    break;
                }
                if (_options.CheckpointInterval > 0 && step % _options.CheckpointInterval == 0 && step < totalSteps)
                {
                    lastCheckpoint = Checkpoint(position, callbacks) ?? lastCheckpoint;
                }
                if (!more) break;
            }
            if (!any) throw new InvalidOperationException($"The training data for epoch {epoch} is empty.");
            if (resuming)
            {
                // The checkpoint closed its epoch: no batch followed it, so restore the RNG here instead.
                CheckpointStore.RestoreRng(state.RngState);
                resuming = false;
            }
            if (step < totalSteps && !cancelled && !control.ShouldStop)
            {
                epoch++;
                resumeSkip = 0;
            }
            else if (step >= totalSteps && !cancelled && _options.CheckpointDirectory is not null)
            {
                lastCheckpoint = Checkpoint(new TrainerState(step, epoch, consumed, skippedSteps, "", epochStartRng), callbacks) ?? lastCheckpoint;
            }
        }

        if (evaluationData is not null && !cancelled) lastEvaluation = Evaluate(evaluationData, step, callbacks, control);
        var result = new TrainingResult(step, skippedSteps, cancelled, control.ShouldStop && step < totalSteps, lastStep, lastEvaluation, lastCheckpoint);
        foreach (IDistillationCallback callback in callbacks) callback.OnTrainingEnd(result);
        return result;
    }

    /// <summary>Evaluates the student (and, once per trainer, the first teacher) on <paramref name="data"/>.</summary>
    public EvaluationReport Evaluate(IEnumerable<DistillationBatch<TInput>> data) => Evaluate(data, 0, [], new TrainerControl());

    private EvaluationReport Evaluate(IEnumerable<DistillationBatch<TInput>> data, long step, IReadOnlyList<IDistillationCallback> callbacks, TrainerControl control)
    {
        Evaluator.Quality student = Evaluator.Measure(_student, data, Device);
        // A cached teacher has no logits to score, and no teacher at all has nothing to score.
        _teacherQuality ??= _teachers.Count > 0 && _teachers[0] is not CachedTeacher<TInput>
            ? Evaluator.Measure(_teachers[0], data, Device)
            : new Evaluator.Quality(student.MetricName, double.NaN, double.NaN);
        double retention = student.MetricName == "accuracy" ? student.Metric / _teacherQuality.Metric : _teacherQuality.Metric / student.Metric;
        var report = new EvaluationReport(step, student.MetricName, student.Metric, _teacherQuality.Metric, student.Loss, _teacherQuality.Loss, retention);
        _logger.LogInformation("evaluation at step {Step}: student {Metric} {Student:0.####} (loss {Loss:0.####}), teacher {Teacher:0.####}, retention {Retention:P1}",
            step, report.MetricName, report.StudentMetric, report.StudentLoss, report.TeacherMetric, report.Retention);
        foreach (IDistillationCallback callback in callbacks) callback.OnEvaluation(report, control);
        return report;
    }

    private StepReport RunStep(List<DistillationBatch<TInput>> microBatches, long step, int epoch, long totalSteps)
    {
        double learningRate = LearningRateSchedule.At(step, totalSteps, _options.LearningRate, _options.WarmupSteps, _options.Decay);
        foreach (var group in _optimizer.ParamGroups) group.LearningRate = learningRate;

        using var stepScope = NewDisposeScope();
        _optimizer.zero_grad(); // inside the scope: zero_grad creates a tensor handle per parameter
        DistillationBatch<TInput>[] batches = microBatches.Select(b => BatchPlacement.To(b, Device)).ToArray();
        // Token-normalised accumulation: micro-batch i's mean loss is weighted by (its kept rows) / (all kept rows of the step),
        // so the step's gradient is that of one mean over every real token, however the tokens fall into micro-batches.
        long?[] rows = CountRows(batches);
        long? totalRows = rows.All(r => r.HasValue) ? rows.Sum() : null;
        double[] shares = batches.Select((_, i) => totalRows is > 0 ? (double)rows[i]!.Value / totalRows.Value : 1.0 / batches.Length).ToArray();

        // Term values stay on the device until the step ends: one host read per step, not one per term and micro-batch.
        // A non-finite loss is therefore found after its backward pass; its gradients are discarded before any update.
        var values = new List<(string Name, double Weight, Tensor Value)>();
        for (int i = 0; i < batches.Length; i++)
        {
            if (shares[i] == 0) continue; // a micro-batch with no real token contributes nothing
            using var scope = NewDisposeScope();
            DistillationBatch<TInput> batch = batches[i];
            var teacherOutputs = new List<ModelOutput>(_teachers.Count);
            if (_objective.UsesTeachers)
            {
                using var noGrad = no_grad();
                foreach (IDistillationModel<TInput> teacher in _teachers) teacherOutputs.Add(teacher.Forward(batch.Inputs, _objective.TeacherRequest));
            }
            ModelOutput studentOutput = _student.Forward(batch.Inputs, _objective.StudentRequest);
            ObjectiveResult result = _objective.Compute(new DistillationContext(teacherOutputs, studentOutput, batch.Labels, batch.Mask ?? studentOutput.AttentionMask, step));
            (result.Total * shares[i]).backward();
            foreach ((string name, Tensor value, double weight) in result.Terms)
            {
                values.Add((name, weight, (value.detach().to(ScalarType.Float32).reshape(1) * shares[i]).MoveToOuterDisposeScope()));
            }
        }

        float[] read = values.Count == 0 ? [] : cat(values.Select(v => v.Value).ToArray()).cpu().data<float>().ToArray();
        double loss = 0;
        var terms = new Dictionary<string, double>();
        string? failedTerm = null;
        double failedValue = 0;
        for (int k = 0; k < values.Count; k++)
        {
            terms[values[k].Name] = terms.GetValueOrDefault(values[k].Name) + read[k];
            loss += values[k].Weight * read[k];
            if (failedTerm is null && !float.IsFinite(read[k]))
            {
                failedTerm = values[k].Name;
                failedValue = read[k];
            }
        }

        double gradientNorm = failedTerm is null ? GradientNorm() : double.NaN;
        if (failedTerm is null && !double.IsFinite(gradientNorm))
        {
            failedTerm = "gradient";
            failedValue = gradientNorm;
        }
        if (failedTerm is not null)
        {
            _optimizer.zero_grad();
            if (_options.NonFiniteLoss == NonFiniteLossPolicy.Stop) throw new NonFiniteLossException(step, failedTerm, failedValue);
            _logger.LogWarning("Step {Step} skipped: {Term} was {Value}", step + 1, failedTerm, failedValue);
            return new StepReport(step + 1, epoch, double.NaN, terms, learningRate, gradientNorm, Skipped: true, totalRows);
        }
        _optimizer.step();
        return new StepReport(step + 1, epoch, loss, terms, learningRate, gradientNorm, Skipped: false, totalRows);
    }

    /// <summary>Kept rows per micro-batch (one host read for all of them), or null for batches without labels or mask.</summary>
    private static long?[] CountRows(DistillationBatch<TInput>[] batches)
    {
        Tensor?[] keeps = batches.Select(BatchPlacement.KeptRows).ToArray();
        if (keeps.Any(k => k is null)) return new long?[batches.Length];
        long[] counts = stack(keeps.Select(k => k!.sum()).ToArray()).cpu().data<long>().ToArray();
        return counts.Select(c => (long?)c).ToArray();
    }

    /// <summary>The global gradient norm, clipped to MaxGradientNorm when set.</summary>
    private double GradientNorm()
    {
        if (_options.MaxGradientNorm is double max) return nn.utils.clip_grad_norm_(_trainable, max);
        using var scope = NewDisposeScope();
        Tensor[] norms = _trainable.Where(p => p.grad is not null).Select(p => p.grad!.norm()).ToArray();
        return norms.Length == 0 ? 0 : stack(norms).norm().item<float>();
    }

    private TrainerState StartOrResume()
    {
        if (_options.ResumeFrom is { } resumeFrom)
        {
            string checkpoint = CheckpointStore.Locate(resumeFrom, _options.CheckpointDirectory);
            TrainerState state = CheckpointStore.Read(checkpoint, _student.Module, _objective, _optimizer);
            _logger.LogInformation("Resuming from {Checkpoint} at step {Step}", checkpoint, state.Step);
            return state;
        }
        if (_options.Seed is long seed) manual_seed(seed);
        return new TrainerState(0, 0, 0, 0, "", "");
    }

    private string? Checkpoint(TrainerState position, IReadOnlyList<IDistillationCallback> callbacks)
    {
        if (_options.CheckpointDirectory is null) return null;
        string path = CheckpointStore.Write(_options.CheckpointDirectory, _options.KeepCheckpoints, _student.Module, _objective, _optimizer,
            position with { RngState = CheckpointStore.CaptureRng() });
        _logger.LogInformation("Checkpoint written: {Path}", path);
        foreach (IDistillationCallback callback in callbacks) callback.OnCheckpoint(path);
        return path;
    }

    private void FreezeTeacher(nn.Module teacher)
    {
        teacher.eval();
        foreach (Parameter p in teacher.parameters()) p.requires_grad_(false);
        teacher.to(Device);
        ScalarType? dtype = _options.TeacherPrecision switch
        {
            TeacherPrecision.BFloat16 => ScalarType.BFloat16,
            TeacherPrecision.Float16 => ScalarType.Float16,
            _ => null,
        };
        if (dtype is ScalarType type) teacher.to(type);
    }

    private static long StepsPerEpoch(IEnumerable<DistillationBatch<TInput>> data, int accumulation)
    {
        long microBatches = data.TryGetNonEnumeratedCount(out int count) ? count : data.LongCount();
        if (microBatches == 0) throw new InvalidOperationException("The training data is empty.");
        return (microBatches + accumulation - 1) / accumulation;
    }
}
