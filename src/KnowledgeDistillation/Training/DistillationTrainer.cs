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
/// callbacks, atomic checkpoints and bit-exact resume. See docs/trainer.md. The trainer owns the optimizer it builds:
/// dispose the trainer when done with it (the models and the objective stay the caller's).
/// </summary>
/// <typeparam name="TInput">What the models consume (a <see cref="Tensor"/>, a <see cref="TokenBatch"/>, or your own type).</typeparam>
public sealed partial class DistillationTrainer<TInput> : IDisposable
{
    private readonly IReadOnlyList<IDistillationModel<TInput>> _teachers;
    private readonly IModuleModel<TInput> _student;
    private readonly DistillationObjective _objective;
    private readonly Losses.IStepOutcomeAware[] _stateful;
    private readonly DistillationTrainerOptions _options;
    private readonly ILogger _logger;
    private readonly OptimizerHelper _optimizer;
    private readonly Parameter[] _trainable;
    private readonly Func<IEnumerable<Parameter>, OptimizerHelper> _createOptimizer;
    // Each parameter group's learning rate as the optimizer was built: the schedule scales these, so a supplied optimizer's
    // own rates (one per group) are kept, and the default AdamW's is the options' LearningRate.
    private readonly double[] _peakLearningRates;
    private bool _disposed;
    // The teacher's quality per evaluation dataset (by reference): it never changes, so it is measured once per dataset. Weak keys:
    // a caller evaluating a new enumerable each time (data.Take(n) in a loop) must not make this grow or keep the data alive.
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<object, Evaluator.Quality> _teacherQuality = new();

    /// <summary>Creates a trainer with one teacher.</summary>
    public DistillationTrainer(IDistillationModel<TInput> teacher, IModuleModel<TInput> student, DistillationObjective objective,
        DistillationTrainerOptions options, ILogger? logger = null, Func<IEnumerable<Parameter>, OptimizerHelper>? optimizer = null)
        : this([teacher ?? throw new ArgumentNullException(nameof(teacher))], student, objective, options, logger, optimizer, nameof(teacher))
    {
    }

    /// <summary>Creates a trainer with several teachers (see <see cref="DistillationObjectiveBuilder.TeacherWeights"/>).</summary>
    /// <param name="teachers">The teachers; put in eval mode, frozen, moved to the device and optionally cast. May be empty when no term
    /// reads a teacher — training a teacher, or the "student alone" control — in which case evaluation reports no teacher metric.</param>
    /// <param name="student">The student.</param>
    /// <param name="objective">What to minimise; its learnable parts are trained with the student.</param>
    /// <param name="options">Validated settings.</param>
    /// <param name="logger">Where progress and decisions are logged.</param>
    /// <param name="optimizer">Builds the optimizer over the trainable parameters; default AdamW with the options' learning rate and weight decay.
    /// A supplied optimizer keeps the learning rate of each of its parameter groups as the peak that the warm-up and decay scale.</param>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException">The options are invalid; the message names each bad field.</exception>
    /// <exception cref="ArgumentException">The teachers or the student cannot serve the objective (teacher-weight count, a term's teacher index,
    /// hidden states or attention a model does not provide, a cached teacher where logits are needed or at another temperature).</exception>
    public DistillationTrainer(IReadOnlyList<IDistillationModel<TInput>> teachers, IModuleModel<TInput> student, DistillationObjective objective,
        DistillationTrainerOptions options, ILogger? logger = null, Func<IEnumerable<Parameter>, OptimizerHelper>? optimizer = null)
        : this(teachers, student, objective, options, logger, optimizer, nameof(teachers))
    {
    }

    // teachersParameter: the caller's name for the teachers (teacher or teachers), for the errors that concern them.
    private DistillationTrainer(IReadOnlyList<IDistillationModel<TInput>> teachers, IModuleModel<TInput> student, DistillationObjective objective,
        DistillationTrainerOptions options, ILogger? logger, Func<IEnumerable<Parameter>, OptimizerHelper>? optimizer, string teachersParameter)
    {
        ArgumentNullException.ThrowIfNull(teachers);
        _student = student ?? throw new ArgumentNullException(nameof(student));
        _objective = objective ?? throw new ArgumentNullException(nameof(objective));
        if (teachers.Count == 0 && objective.UsesTeachers)
        {
            throw new ArgumentException("Give at least one teacher: terms of the objective read teacher outputs. (Without teachers, only label-only objectives can run.)", teachersParameter);
        }
        _options = options ?? throw new ArgumentNullException(nameof(options));
        DistillationTrainerOptionsValidator.ThrowIfInvalid(options);
        _teachers = teachers.ToArray();
        if (_teachers.Any(t => t is null)) throw new ArgumentException("The teachers list holds a null entry.", teachersParameter);
        _logger = logger ?? NullLogger.Instance;
        objective.ValidateTeachers(_teachers.Select(t => (t.Provides, (t as ITopKTeacher)?.TopKTemperature)).ToArray(), teachersParameter);
        ModelOutputKinds studentMissing = (objective.StudentRequest.Needs() | ModelOutputKinds.Logits) & ~student.Provides;
        if (studentMissing != ModelOutputKinds.None)
        {
            throw new ArgumentException($"The objective needs {studentMissing} from the student, which provides only {student.Provides}.", nameof(student));
        }

        Device = DeviceSelection.Resolve(options.Device);
        TeacherDevice = options.TeacherDevice is null ? Device : DeviceSelection.Resolve(options.TeacherDevice);
        _logger.LogInformation("Distillation device: {Device} (requested \"{Requested}\", CUDA available: {Cuda})", Device, options.Device, cuda.is_available());
        foreach (IDistillationModel<TInput> teacher in _teachers) PrepareTeacher(teacher);
        _student.Module.to(Device);
        _objective.to(Device);
        _trainable = _student.Module.parameters().Concat(_objective.parameters()).Where(p => p.requires_grad).ToArray();
        // Losses with state of their own (CRD's memory banks) keep a step's change only when the optimizer step is taken.
        _stateful = _objective.modules().OfType<Losses.IStepOutcomeAware>().ToArray();
        foreach (Losses.IStepOutcomeAware loss in _stateful) loss.DeferUntilStepOutcome();
        _createOptimizer = optimizer ?? (parameters => optim.AdamW(parameters, options.LearningRate, weight_decay: options.WeightDecay));
        _optimizer = _createOptimizer(_trainable);
        _peakLearningRates = _optimizer.ParamGroups.Select(g => g.LearningRate).ToArray();
    }

    /// <summary>Disposes the optimizer the trainer built; later calls of <see cref="Train(IEnumerable{DistillationBatch{TInput}}, IEnumerable{DistillationBatch{TInput}}?, IReadOnlyList{IDistillationCallback}?, IProgress{TrainingProgress}?, CancellationToken)"/> or <see cref="Evaluate(IEnumerable{DistillationBatch{TInput}})"/> throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _optimizer.Dispose();
    }

    /// <summary>The device the models run on.</summary>
    public Device Device { get; }

    /// <summary>Where module teachers run (<see cref="DistillationTrainerOptions.TeacherDevice"/>; the student's device unless set).</summary>
    public Device TeacherDevice { get; }

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
    /// <exception cref="InvalidDataException">The checkpoint to resume from is damaged (with "latest": every checkpoint is); nothing was changed.</exception>
    /// <exception cref="InvalidOperationException">The checkpoint belongs to another model, objective, optimizer or batching; nothing was changed.</exception>
    public TrainingResult Train(Func<int, IEnumerable<DistillationBatch<TInput>>> dataForEpoch, IEnumerable<DistillationBatch<TInput>>? evaluationData = null,
        IReadOnlyList<IDistillationCallback>? callbacks = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(dataForEpoch);
        callbacks ??= [];
        var control = new TrainerControl();
        int accumulation = _options.GradientAccumulationSteps;
        long totalSteps = _options.MaxSteps ?? _options.Epochs * StepsPerEpoch(dataForEpoch, accumulation);
        RemoveIncompleteCheckpointWrites();
        (TrainingRun run, long? expectedFirstRows) = StartOrResume(totalSteps);
        StepReport? lastStep = null;
        EvaluationReport? lastEvaluation = null;
        string? lastCheckpoint = null;
        bool cancelled = false;

        _student.Module.train();
        _objective.train();
        while (run.Step < totalSteps && !control.ShouldStop && !cancelled)
        {
            run.BeginEpoch();
            var pending = new List<DistillationBatch<TInput>>(accumulation);
            IEnumerable<DistillationBatch<TInput>> epochData = dataForEpoch(run.Epoch);
            if (run.PendingSkip > 0 && epochData is IResumableData<TInput> resumable)
            {
                epochData = resumable.StartingAt(run.PendingSkip); // passes over the consumed micro-batches without making them
                run.PassedOverWithoutReplay();
            }
            using IEnumerator<DistillationBatch<TInput>> batches = epochData.GetEnumerator();
            bool any = false;
            while (run.Step < totalSteps && !control.ShouldStop)
            {
                run.BeforeNextMicroBatch();
                bool more = batches.MoveNext();
                if (more)
                {
                    DistillationBatch<TInput> batch = batches.Current;
                    long? rows = RowsOf(batch);
                    if (!any && run.IsResuming) RequireSameBatching(expectedFirstRows, rows);
                    any = true;
                    run.SawMicroBatch(rows);
                    if (run.AlreadyConsumed())
                    {
                        BatchPlacement.Release(batch);
                        continue;
                    }
                    pending.Add(batch);
                    if (pending.Count < accumulation) continue;
                }
                if (pending.Count == 0) break;

                lastStep = RunStep(pending, run, totalSteps);
                run.CompleteStep(pending.Count, lastStep.Skipped);
                pending.ForEach(BatchPlacement.Release);
                pending.Clear();
                foreach (IDistillationCallback callback in callbacks) callback.OnStepEnd(lastStep, control);
                progress?.Report(new TrainingProgress(run.Step, totalSteps, lastStep.Loss)); // every step: the receiver decides how often to show it
                if (run.Step % _options.LoggingInterval == 0 || run.Step == totalSteps)
                {
                    _logger.LogInformation("step {Step}/{Total} loss {Loss:0.#####} lr {LearningRate:0.####E+0} {Terms}", run.Step, totalSteps, lastStep.Loss,
                        lastStep.LearningRate, string.Join(" ", lastStep.Terms.Select(t => $"{t.Key} {t.Value:0.#####}")));
                }
                if (evaluationData is not null && _options.EvaluationInterval > 0 && run.Step % _options.EvaluationInterval == 0 && run.Step < totalSteps)
                {
                    lastEvaluation = Evaluate(evaluationData, run.Step, callbacks, control);
                }
                if (cancellationToken.IsCancellationRequested)
                {
                    cancelled = true;
                    lastCheckpoint = Checkpoint(run, totalSteps, callbacks) ?? lastCheckpoint;
                    _logger.LogWarning("Cancelled at step {Step}; {Checkpoint}", run.Step, lastCheckpoint is null ? "no CheckpointDirectory, so nothing was saved" : $"resume from {lastCheckpoint}");
                    break;
                }
                if (_options.CheckpointInterval > 0 && run.Step % _options.CheckpointInterval == 0 && run.Step < totalSteps)
                {
                    lastCheckpoint = Checkpoint(run, totalSteps, callbacks) ?? lastCheckpoint;
                }
                if (!more) break;
            }
            if (!any) throw new InvalidOperationException($"The training data for epoch {run.Epoch} is empty.");
            run.RequireReplayComplete();
            run.FinishResume(); // the checkpoint closed its epoch: no batch followed it, so the RNG is restored here
            if (run.Step < totalSteps && !cancelled && !control.ShouldStop)
            {
                run.NextEpoch();
            }
            else if (run.Step >= totalSteps && !cancelled)
            {
                lastCheckpoint = Checkpoint(run, totalSteps, callbacks) ?? lastCheckpoint;
            }
        }

        if (evaluationData is not null && !cancelled) lastEvaluation = Evaluate(evaluationData, run.Step, callbacks, control);
        var result = new TrainingResult(run.Step, run.SkippedSteps, cancelled, control.ShouldStop && run.Step < totalSteps, lastStep, lastEvaluation, lastCheckpoint);
        foreach (IDistillationCallback callback in callbacks) callback.OnTrainingEnd(result);
        return result;
    }

    /// <summary>Evaluates the student (and, once per dataset, the first teacher) on <paramref name="data"/>.</summary>
    public EvaluationReport Evaluate(IEnumerable<DistillationBatch<TInput>> data)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Evaluate(data, 0, [], new TrainerControl());
    }

    private EvaluationReport Evaluate(IEnumerable<DistillationBatch<TInput>> data, long step, IReadOnlyList<IDistillationCallback> callbacks, TrainerControl control)
    {
        Evaluator.Quality student = Evaluator.Measure(_student, data, Device);
        // A cached teacher has no logits to score, and no teacher at all has nothing to score.
        if (!_teacherQuality.TryGetValue(data, out Evaluator.Quality? teacher))
        {
            teacher = _teachers.Count > 0 && _teachers[0].Provides.HasFlag(ModelOutputKinds.Logits)
                ? Evaluator.Measure(_teachers[0], data, _teachers[0] is IModuleModel<TInput> ? TeacherDevice : Device)
                : new Evaluator.Quality(student.MetricName, double.NaN, double.NaN);
            _teacherQuality.AddOrUpdate(data, teacher);
        }
        double retention = student.MetricName == "accuracy" ? student.Metric / teacher.Metric : teacher.Metric / student.Metric;
        var report = new EvaluationReport(step, student.MetricName, student.Metric, teacher.Metric, student.Loss, teacher.Loss, retention);
        _logger.LogInformation("evaluation at step {Step}: student {Metric} {Student:0.####} (loss {Loss:0.####}), teacher {Teacher:0.####}, retention {Retention:P1}",
            step, report.MetricName, report.StudentMetric, report.StudentLoss, report.TeacherMetric, report.Retention);
        foreach (IDistillationCallback callback in callbacks) callback.OnEvaluation(report, control);
        return report;
    }

    /// <summary>A micro-batch's rows: the first dimension of its input tensor or token ids, else of its labels or mask.</summary>
    private static long? RowsOf(DistillationBatch<TInput> batch) => batch.Inputs switch
    {
        Tensor t when t.dim() > 0 => t.shape[0],
        TokenBatch b => b.InputIds.shape[0],
        _ => batch.Labels is { } l && l.dim() > 0 ? l.shape[0] : batch.Mask is { } m && m.dim() > 0 ? m.shape[0] : null,
    };

    /// <summary>A module teacher is frozen, put in eval mode, moved to the teacher device and optionally cast; any other is told the student's device.</summary>
    private void PrepareTeacher(IDistillationModel<TInput> model)
    {
        if (model is not IModuleModel<TInput> { Module: var teacher })
        {
            if (model is IDevicePlacement placement) placement.PlaceOn(Device);
            return;
        }
        if (model is IDevicePlacement modulePlacement) modulePlacement.PlaceOn(TeacherDevice);
        teacher.eval();
        foreach (Parameter p in teacher.parameters()) p.requires_grad_(false);
        teacher.to(TeacherDevice);
        ScalarType? dtype = _options.TeacherPrecision switch
        {
            TeacherPrecision.BFloat16 => ScalarType.BFloat16,
            TeacherPrecision.Float16 => ScalarType.Float16,
            _ => null,
        };
        if (dtype is ScalarType type) teacher.to(type);
    }

    /// <summary>
    /// Steps in an epoch, for Epochs-based runs. A collection is counted without enumerating it, and data that knows
    /// its count (<see cref="IResumableData{TInput}.MicroBatchCount"/>) is asked; a generator is enumerated once (its
    /// batches released as the trainer would). torch's RNG is put back afterwards, so the count leaves no trace. Give
    /// MaxSteps to avoid counting.
    /// </summary>
    private long StepsPerEpoch(Func<int, IEnumerable<DistillationBatch<TInput>>> dataForEpoch, int accumulation)
    {
        string rng = CheckpointStore.CaptureRng();
        IEnumerable<DistillationBatch<TInput>> data = dataForEpoch(0);
        long microBatches = data.TryGetNonEnumeratedCount(out int count) ? count
            : data is IResumableData<TInput> { MicroBatchCount: long known } ? known
            : CountOnce(data);
        CheckpointStore.RestoreRng(rng);
        if (microBatches == 0) throw new InvalidOperationException("The training data is empty.");
        return (microBatches + accumulation - 1) / accumulation;
    }

    private long CountOnce(IEnumerable<DistillationBatch<TInput>> data)
    {
        long counted = 0;
        foreach (DistillationBatch<TInput> batch in data)
        {
            counted++;
            BatchPlacement.Release(batch);
        }
        _logger.LogInformation("Counted {MicroBatches} micro-batches in epoch 0 by enumerating it once (set MaxSteps to skip this pass)", counted);
        return counted;
    }
}
