using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

// One optimizer step: forward passes, token-normalised accumulation, the non-finite check, clipping and the update.
public sealed partial class DistillationTrainer<TInput>
{
    private StepReport RunStep(List<DistillationBatch<TInput>> microBatches, TrainingRun run, long totalSteps)
    {
        long step = run.Step;
        int epoch = run.Epoch;
        double learningRate = 0;
        int groupIndex = 0;
        foreach (var group in _optimizer.ParamGroups)
        {
            double rate = LearningRateSchedule.At(step, totalSteps, _peakLearningRates[groupIndex], _options.WarmupSteps, _options.Decay);
            if (groupIndex++ == 0) learningRate = rate; // the first group's rate is the one reported
            group.LearningRate = rate;
        }
        // A step that threw (a bad batch) left its state changes pending: they were never applied and are dropped here.
        foreach (Losses.IStepOutcomeAware stateful in _stateful) stateful.StepOutcome(applied: false);
        ReseedAccelerator();

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
        var values = new List<(string Name, double Weight, Tensor Value, int MicroBatch)>();
        for (int i = 0; i < batches.Length; i++)
        {
            if (shares[i] == 0) continue; // a micro-batch with no real token contributes nothing
            using var scope = NewDisposeScope();
            DistillationBatch<TInput> batch = batches[i];
            var teacherOutputs = new List<ModelOutput>(_teachers.Count);
            if (_objective.UsesTeachers)
            {
                using var noGrad = no_grad();
                for (int k = 0; k < _teachers.Count; k++)
                {
                    if (_options.TeacherDevice is not null && _teachers[k] is IModuleModel<TInput>)
                    {
                        // A teacher on its own device: the inputs go there, its output comes back once.
                        TInput onTeacher = BatchPlacement.Inputs(batch.Inputs, TeacherDevice);
                        ModelOutput there = Native(() => _teachers[k].Run(onTeacher, _objective.TeacherRequest), $"teacher {k}'s forward pass", batch, run, i);
                        teacherOutputs.Add(there.To(Device));
                        continue;
                    }
                    teacherOutputs.Add(Native(() => _teachers[k].Run(batch.Inputs, _objective.TeacherRequest), $"teacher {k}'s forward pass", batch, run, i));
                }
            }
            ModelOutput studentOutput = Native(() => _student.Run(batch.Inputs, _objective.StudentRequest), "the student's forward pass", batch, run, i);
            ObjectiveResult result = Native(() => _objective.Compute(new DistillationContext(teacherOutputs, studentOutput, batch.Labels, batch.Mask ?? studentOutput.AttentionMask, step)
            {
                ExampleIndices = batch.ExampleIndices,
                Inputs = batch.Inputs,
            }),
                "the objective", batch, run, i);
            (result.Total * shares[i]).backward();
            foreach ((string name, Tensor value, double weight) in result.Terms)
            {
                values.Add((name, weight, (value.detach().to(ScalarType.Float32).reshape(1) * shares[i]).MoveToOuterDisposeScope(), i));
            }
        }

        float[] read = values.Count == 0 ? [] : cat(values.Select(v => v.Value).ToArray()).cpu().data<float>().ToArray();
        double loss = 0;
        var terms = new Dictionary<string, double>();
        string? failedTerm = null;
        double failedValue = 0;
        int failedMicroBatch = -1;
        for (int k = 0; k < values.Count; k++)
        {
            terms[values[k].Name] = terms.GetValueOrDefault(values[k].Name) + read[k];
            loss += values[k].Weight * read[k];
            if (failedTerm is null && !float.IsFinite(read[k]))
            {
                failedTerm = values[k].Name;
                failedValue = read[k];
                failedMicroBatch = values[k].MicroBatch;
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
            foreach (Losses.IStepOutcomeAware stateful in _stateful) stateful.StepOutcome(applied: false);
            // The micro-batch's position in its epoch (0-based), counting those the step consumed before it.
            long? position = failedMicroBatch >= 0 ? run.MicroBatchesIntoEpoch + failedMicroBatch : null;
            if (_options.NonFiniteLoss == NonFiniteLossPolicy.Stop) throw new NonFiniteLossException(step, failedTerm, failedValue, epoch, position);
            _logger.LogWarning("Step {Step} skipped: {Term} was {Value} (epoch {Epoch}, micro-batch {MicroBatch} of the epoch)", step + 1, failedTerm, failedValue,
                epoch, position?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "n/a");
            return new StepReport(step + 1, epoch, double.NaN, terms, learningRate, gradientNorm, Skipped: true, totalRows);
        }
        _optimizer.step();
        foreach (Losses.IStepOutcomeAware stateful in _stateful) stateful.StepOutcome(applied: true);
        return new StepReport(step + 1, epoch, loss, terms, learningRate, gradientNorm, Skipped: false, totalRows);
    }

    /// <summary>
    /// Called with the seed given to the accelerator's generators before each step; tests set it to see the seeds on a
    /// machine without a GPU (the reseeding then runs on the CPU too).
    /// </summary>
    internal Action<long>? AcceleratorReseeded { get; set; }

    /// <summary>
    /// TorchSharp 0.107 cannot read or set the CUDA generators' state, so a checkpoint cannot hold it. Instead, on a GPU
    /// each step reseeds them with a number drawn from the CPU generator, whose state every checkpoint holds: a resumed
    /// run draws the same number at the same step, so GPU dropout masks repeat too.
    /// </summary>
    private void ReseedAccelerator()
    {
        if (Device.type != DeviceType.CUDA && AcceleratorReseeded is null) return;
        using var scope = NewDisposeScope();
        long seed = randint(long.MaxValue, [1], dtype: ScalarType.Int64).item<long>();
        if (Device.type == DeviceType.CUDA) torch.cuda.manual_seed_all(seed);
        AcceleratorReseeded?.Invoke(seed);
    }

    /// <summary>
    /// Runs <paramref name="action"/>; a libtorch error inside it (a model that cannot take the batch, a custom term's
    /// shape error) becomes an <see cref="InvalidOperationException"/> saying what failed, on which micro-batch, with
    /// which input, and keeping libtorch's message and the original exception.
    /// </summary>
    private static T Native<T>(Func<T> action, string what, DistillationBatch<TInput> batch, TrainingRun run, int microBatch)
    {
        try
        {
            return action();
        }
        catch (System.Runtime.InteropServices.ExternalException e)
        {
            string input = batch.Inputs switch
            {
                Tensor t => $"input {t.dtype} {Shapes.Describe(t.shape)}",
                TokenBatch b => $"token ids {Shapes.Describe(b.InputIds.shape)}",
                _ => $"input {typeof(TInput).Name}",
            };
            throw new InvalidOperationException(
                $"{char.ToUpperInvariant(what[0])}{what[1..]} failed at step {run.Step + 1} (epoch {run.Epoch}, micro-batch {run.MicroBatchesIntoEpoch + microBatch} of the epoch) " +
                $"on {input}: {e.Message.Split('\n')[0]}", e);
        }
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
}
