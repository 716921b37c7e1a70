using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

/// <summary>Where a run stands: what a checkpoint restores besides weights and optimizer state.</summary>
internal sealed record TrainerState(long Step, int Epoch, long MicroBatchesIntoEpoch, long SkippedSteps, string RngState, string EpochStartRngState)
{
    public static TrainerState Fresh { get; } = new(0, 0, 0, 0, "", "");
}

/// <summary>Points inside a checkpoint write at which a test can simulate a crash (see <see cref="CheckpointStore.CrashPoint"/>).</summary>
internal enum CheckpointWritePoint
{
    /// <summary>The student's file is written into the temporary folder; nothing else is.</summary>
    StudentWritten,

    /// <summary>Every file and the manifest are written and flushed; the temporary folder is not renamed yet.</summary>
    ManifestWritten,

    /// <summary>An earlier checkpoint of the same step was renamed aside; the new one is not in place yet.</summary>
    PreviousMovedAside,

    /// <summary>The new checkpoint is in place; the set-aside one (if any) and old checkpoints are not deleted yet.</summary>
    Renamed,
}

/// <summary>A checkpoint whose every file matched its manifest when it was verified.</summary>
internal sealed record VerifiedCheckpoint(string Path, CheckpointManifest Manifest, TrainerState State);

/// <summary>
/// Checkpoint folders <c>checkpoint-{step}</c>, written like a database writes a commit: the student's and the
/// objective's weights (TorchSharp format), the optimizer state and <c>trainer.json</c> (step, data position, RNG
/// states) go into a temporary folder and are flushed to disk; <c>manifest.json</c> (the SHA-256 of each file, the
/// state-dict signatures, the settings) is written and flushed last; the folder is flushed, renamed into place, and
/// its parent flushed. Resume verifies every checksum and reads everything into temporaries before it touches the
/// student, the objective or the optimizer. See docs/trainer.md, "Checkpoints".
/// </summary>
internal static class CheckpointStore
{
    public const string Prefix = "checkpoint-";
    public const string StudentFile = "student.dat", ObjectiveFile = "objective.dat", OptimizerFile = "optimizer.dat", StateFile = "trainer.json";
    public static readonly string[] DataFiles = [StudentFile, ObjectiveFile, OptimizerFile, StateFile];

    /// <summary>Marks the folder name of an earlier checkpoint of the same step while its replacement is renamed into place.</summary>
    public const string AsideMarker = ".old-";

    /// <summary>
    /// Called at each <see cref="CheckpointWritePoint"/> of a write on this thread, with the step being written. Tests
    /// only: the crash harness kills its own process here, so that a kill lands at a chosen point of a write rather than
    /// by chance. Per thread, so that a test setting it never reaches a trainer of another test running beside it.
    /// </summary>
    [ThreadStatic]
    internal static Action<CheckpointWritePoint, long>? CrashPoint;

    public static string Write(string directory, int keep, nn.Module student, nn.Module objective, OptimizerHelper optimizer, TrainerState state,
        CheckpointSettings settings, ILogger logger)
    {
        Directory.CreateDirectory(directory);
        string final = Path.Combine(directory, Prefix + state.Step.ToString(CultureInfo.InvariantCulture));
        string temporary = Path.Combine(directory, $".{Prefix}{state.Step}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temporary);
        try
        {
            StoredStudentPart? part = StudentState.Write(student, Path.Combine(temporary, StudentFile));
            CrashPoint?.Invoke(CheckpointWritePoint.StudentWritten, state.Step);
            objective.save(Path.Combine(temporary, ObjectiveFile));
            optimizer.save_state_dict(Path.Combine(temporary, OptimizerFile));
            File.WriteAllBytes(Path.Combine(temporary, StateFile), JsonSerializer.SerializeToUtf8Bytes(state));
            var files = new Dictionary<string, FileDigest>();
            foreach (string name in DataFiles)
            {
                string path = Path.Combine(temporary, name);
                Durability.FlushFile(path);
                files[name] = CheckpointManifest.Digest(path);
            }
            var manifest = new CheckpointManifest(CheckpointManifest.CurrentFormat, CheckpointManifest.CurrentLibraryVersion, state.Step, DateTimeOffset.UtcNow,
                files, TensorSignature.Of(student), TensorSignature.Of(objective), optimizer.GetType().Name, settings, StoredStudent: part);
            string manifestPath = Path.Combine(temporary, CheckpointManifest.FileName);
            File.WriteAllBytes(manifestPath, manifest.Serialize());
            Durability.FlushFile(manifestPath);
            Durability.FlushDirectory(temporary);
            CrashPoint?.Invoke(CheckpointWritePoint.ManifestWritten, state.Step);
            // The same step written again (a run resumed from an older checkpoint passes it again): the earlier folder is
            // renamed aside, not deleted, until the new one is in place, so a crash in between loses neither. A trainer
            // that starts puts a set-aside folder back when its step has no checkpoint (RemoveIncompleteWrites).
            string? aside = null;
            if (Directory.Exists(final))
            {
                aside = Path.Combine(directory, $".{Prefix}{state.Step}{AsideMarker}{Guid.NewGuid():N}");
                Directory.Move(final, aside);
                Durability.FlushDirectory(directory);
                CrashPoint?.Invoke(CheckpointWritePoint.PreviousMovedAside, state.Step);
            }
            Directory.Move(temporary, final);
            Durability.FlushDirectory(directory);
            CrashPoint?.Invoke(CheckpointWritePoint.Renamed, state.Step);
            if (aside is not null) Directory.Delete(aside, recursive: true);
        }
        finally
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        }
        foreach (string removed in Checkpoints.Prune(directory, keep)) logger.LogInformation("Removed old checkpoint {Path} (KeepCheckpoints = {Keep})", removed, keep);
        return final;
    }

    /// <summary>Checks the manifest, every file's length and SHA-256, and trainer.json; touches no model.</summary>
    /// <exception cref="InvalidDataException">Something is missing or damaged; the message names the file and the problem.</exception>
    public static VerifiedCheckpoint Verify(string checkpoint)
    {
        CheckpointManifest manifest = CheckpointManifest.Read(Path.Combine(checkpoint, CheckpointManifest.FileName));
        if (StepOf(checkpoint) is long named && named != manifest.Step)
        {
            throw new InvalidDataException($"{Path.Combine(checkpoint, CheckpointManifest.FileName)} is for step {manifest.Step}, but the folder is named for step {named}.");
        }
        foreach (string name in DataFiles)
        {
            string path = Path.Combine(checkpoint, name);
            if (!manifest.Files.TryGetValue(name, out FileDigest? expected)) throw new InvalidDataException($"{Path.Combine(checkpoint, CheckpointManifest.FileName)} lists no checksum for {name}.");
            if (!File.Exists(path)) throw new InvalidDataException($"{path} is missing.");
            FileDigest actual = CheckpointManifest.Digest(path);
            if (actual.Length != expected.Length) throw new InvalidDataException($"{path} is damaged: {actual.Length} bytes, the manifest says {expected.Length}.");
            if (actual.Sha256 != expected.Sha256) throw new InvalidDataException($"{path} is damaged: its SHA-256 does not match the manifest.");
        }
        TrainerState state = ReadState(Path.Combine(checkpoint, StateFile));
        if (state.Step != manifest.Step) throw new InvalidDataException($"{Path.Combine(checkpoint, StateFile)} is for step {state.Step}, the manifest for step {manifest.Step}.");
        RequirePossible(checkpoint, manifest.Settings, state);
        return new VerifiedCheckpoint(checkpoint, manifest, state);
    }

    /// <summary>
    /// The newest checkpoint in <paramref name="directory"/> that verifies, logging a warning for each newer one skipped;
    /// null when the folder holds no checkpoint at all.
    /// </summary>
    /// <exception cref="InvalidDataException">Checkpoints exist but none verifies (each problem is listed).</exception>
    public static VerifiedCheckpoint? Latest(string directory, ILogger logger)
    {
        var problems = new List<string>();
        foreach ((string path, _) in Checkpoints.Folders(directory).Reverse())
        {
            try
            {
                return Verify(path);
            }
            catch (InvalidDataException e)
            {
                logger.LogWarning("Skipping checkpoint {Path}: {Problem}", path, e.Message);
                problems.Add(e.Message);
            }
        }
        if (problems.Count == 0) return null;
        throw new InvalidDataException($"None of the {problems.Count} checkpoints in {directory} verifies:{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", problems));
    }

    /// <summary>
    /// Restores a verified checkpoint. Compatibility (state-dict signatures, optimizer, settings) is checked first;
    /// then the student, the objective and (through <paramref name="shadowOptimizer"/>, an optimizer of the same kind
    /// over stand-in parameters) the optimizer state are read into temporaries; only when all of them read cleanly are
    /// they copied into the live student, objective and optimizer.
    /// </summary>
    /// <exception cref="InvalidOperationException">The checkpoint belongs to a different model, objective, optimizer or batching.</exception>
    /// <exception cref="InvalidDataException">A file cannot be read back; nothing was changed.</exception>
    public static TrainerState Restore(VerifiedCheckpoint checkpoint, nn.Module student, nn.Module objective, OptimizerHelper optimizer,
        Func<IEnumerable<Parameter>, OptimizerHelper> shadowOptimizer, Parameter[] trainable, CheckpointSettings settings, ILogger logger)
    {
        CheckpointManifest manifest = checkpoint.Manifest;
        var breaking = new List<string>();
        breaking.AddRange(SignatureDifferences("student", manifest.Student, TensorSignature.Of(student)));
        breaking.AddRange(SignatureDifferences("objective", manifest.Objective, TensorSignature.Of(objective)));
        if (manifest.Optimizer != optimizer.GetType().Name) breaking.Add($"the optimizer was {manifest.Optimizer} and is {optimizer.GetType().Name} now");
        breaking.AddRange(settings.BreakingDifferences(manifest.Settings));
        string[] frozen = StudentState.FrozenNames(student);
        if (manifest.StoredStudent is { } part)
        {
            // The checkpoint holds only what trained: the frozen rest must be the same tensors it trained on.
            if (frozen.Length != part.FrozenTensors || StudentState.FrozenDigest(student, frozen) != part.FrozenDigest)
            {
                breaking.Add($"the student's frozen parameters ({frozen.Length} tensors now, {part.FrozenTensors} then) are not the ones it was trained on " +
                    $"(digest {part.FrozenDigest[..12]}…): load the same base weights and freeze the same parameters before resuming");
            }
        }
        if (breaking.Count > 0)
        {
            throw new InvalidOperationException($"Cannot resume from {checkpoint.Path}: " + string.Join("; ", breaking) + ". Nothing was changed.");
        }
        foreach (string difference in settings.PlanDifferences(manifest.Settings))
        {
            logger.LogWarning("Resuming from {Checkpoint}: {Difference}", checkpoint.Path, difference);
        }

        Dictionary<string, Tensor>? studentState = null, objectiveState = null;
        try
        {
            studentState = ModuleStateFile.Read(Path.Combine(checkpoint.Path, StudentFile), student, manifest.StoredStudent?.Names);
            objectiveState = ModuleStateFile.Read(Path.Combine(checkpoint.Path, ObjectiveFile), objective);
            ReadOptimizerIntoStandIn(Path.Combine(checkpoint.Path, OptimizerFile), shadowOptimizer, trainable);

            ModuleStateFile.CopyInto(student, studentState);
            ModuleStateFile.CopyInto(objective, objectiveState);
            optimizer.load_state_dict(Path.Combine(checkpoint.Path, OptimizerFile)); // the same verified bytes the stand-in just read
            return checkpoint.State;
        }
        finally
        {
            ModuleStateFile.Dispose(studentState);
            ModuleStateFile.Dispose(objectiveState);
        }
    }

    public static string CaptureRng()
    {
        using Tensor state = get_rng_state();
        return Convert.ToBase64String(state.data<byte>().ToArray());
    }

    public static void RestoreRng(string base64)
    {
        using Tensor state = tensor(DecodeRng(base64, StateFile), dtype: ScalarType.Byte);
        set_rng_state(state);
    }

    public static long? StepOf(string folder)
    {
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(folder));
        return name.StartsWith(Prefix, StringComparison.Ordinal)
            && long.TryParse(name.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out long step)
            ? step
            : null;
    }

    private static TrainerState ReadState(string path)
    {
        TrainerState? state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(Formats.JsonFile.ReadBounded(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not valid: {e.Message}", e);
        }
        if (state is null || state.RngState is null || state.EpochStartRngState is null) throw new InvalidDataException($"{path} lacks required fields.");
        if (state.Step < 0 || state.Epoch < 0 || state.MicroBatchesIntoEpoch < 0 || state.SkippedSteps < 0 || state.SkippedSteps > state.Step)
        {
            throw new InvalidDataException($"{path} holds an impossible position (step {state.Step}, epoch {state.Epoch}, micro-batch {state.MicroBatchesIntoEpoch}, skipped {state.SkippedSteps}).");
        }
        DecodeRng(state.RngState, path);
        DecodeRng(state.EpochStartRngState, path);
        return state;
    }

    /// <summary>
    /// Checksums say a file is the one written, not that what was written is possible: a resealed manifest with an edited
    /// trainer.json verifies. So every field's range is checked too, alone and against the others.
    /// </summary>
    private static void RequirePossible(string checkpoint, CheckpointSettings settings, TrainerState state)
    {
        string manifest = Path.Combine(checkpoint, CheckpointManifest.FileName), trainer = Path.Combine(checkpoint, StateFile);
        void Require(bool ok, string file, string field, object? value, string expected)
        {
            if (!ok) throw new InvalidDataException($"{file}: {field} is {value ?? "null"}; it must be {expected}.");
        }
        Require(settings.GradientAccumulationSteps >= 1, manifest, "Settings.GradientAccumulationSteps", settings.GradientAccumulationSteps, "at least 1");
        Require(settings.PlannedSteps >= 0, manifest, "Settings.PlannedSteps", settings.PlannedSteps, "0 or more");
        Require(settings.MaxSteps is null or >= 0, manifest, "Settings.MaxSteps", settings.MaxSteps, "null or 0 or more");
        Require(settings.Epochs >= 0, manifest, "Settings.Epochs", settings.Epochs, "0 or more");
        Require(settings.MicroBatchRows is null or >= 0, manifest, "Settings.MicroBatchRows", settings.MicroBatchRows, "null or 0 or more");
        Require(double.IsFinite(settings.LearningRate) && settings.LearningRate > 0, manifest, "Settings.LearningRate", settings.LearningRate, "a finite number above 0");
        Require(settings.WarmupSteps >= 0, manifest, "Settings.WarmupSteps", settings.WarmupSteps, "0 or more");
        Require(Enum.TryParse<LearningRateDecay>(settings.Decay, out _), manifest, "Settings.Decay", settings.Decay, $"one of {string.Join(", ", Enum.GetNames<LearningRateDecay>())}");
        Require(double.IsFinite(settings.WeightDecay) && settings.WeightDecay >= 0, manifest, "Settings.WeightDecay", settings.WeightDecay, "a finite number, 0 or more");
        Require(settings.MaxGradientNorm is null || (double.IsFinite(settings.MaxGradientNorm.Value) && settings.MaxGradientNorm > 0), manifest, "Settings.MaxGradientNorm",
            settings.MaxGradientNorm, "null or a finite number above 0");
        Require(settings.ObjectiveTerms is not null && settings.ObjectiveTerms.All(t => !string.IsNullOrEmpty(t)), manifest, "Settings.ObjectiveTerms", "(a list with an empty name)", "a list of term names");
        // Each epoch so far had at least one step, and the micro-batches of this epoch are at most those of every step taken.
        Require(state.Epoch <= state.Step, trainer, "Epoch", state.Epoch, $"at most the step ({state.Step})");
        long mostMicroBatches = state.Step > long.MaxValue / settings.GradientAccumulationSteps ? long.MaxValue : state.Step * settings.GradientAccumulationSteps;
        Require(state.MicroBatchesIntoEpoch <= mostMicroBatches, trainer, "MicroBatchesIntoEpoch", state.MicroBatchesIntoEpoch,
            $"at most step × GradientAccumulationSteps ({mostMicroBatches})");
    }

    /// <summary>An RNG state of the wrong length would reach libtorch's set_rng_state unchecked (a native abort): check it here.</summary>
    private static byte[] DecodeRng(string base64, string path)
    {
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(base64);
        }
        catch (FormatException e)
        {
            throw new InvalidDataException($"{path} holds an RNG state that is not valid base64.", e);
        }
        using Tensor current = get_rng_state();
        if (bytes.Length != current.shape[0])
        {
            throw new InvalidDataException($"{path} holds an RNG state of {bytes.Length} bytes; this libtorch's CPU generator state has {current.shape[0]}.");
        }
        return bytes;
    }

    private static void ReadOptimizerIntoStandIn(string path, Func<IEnumerable<Parameter>, OptimizerHelper> create, Parameter[] trainable)
    {
        using var scope = NewDisposeScope();
        Parameter[] standIns = trainable.Select(p => new Parameter(zeros_like(p), p.requires_grad)).ToArray();
        OptimizerHelper standIn = create(standIns);
        try
        {
            standIn.load_state_dict(path);
        }
        catch (Exception e) when (e is IOException or ArgumentException or FormatException or InvalidDataException or System.Runtime.InteropServices.ExternalException)
        {
            throw new InvalidDataException($"{path} cannot be restored: {e.Message}", e);
        }
    }

    private static IEnumerable<string> SignatureDifferences(string what, IReadOnlyList<TensorSignature> saved, IReadOnlyList<TensorSignature> now)
    {
        var savedByName = saved.ToDictionary(s => s.Name);
        var nowByName = now.ToDictionary(s => s.Name);
        var differences = new List<string>();
        differences.AddRange(saved.Where(s => !nowByName.ContainsKey(s.Name)).Select(s => $"the checkpoint's {what} has {s}, which the {what} lacks"));
        differences.AddRange(now.Where(s => !savedByName.ContainsKey(s.Name)).Select(s => $"the {what} has {s}, which the checkpoint lacks"));
        differences.AddRange(now.Where(s => savedByName.TryGetValue(s.Name, out TensorSignature? o) && (!o.Shape.SequenceEqual(s.Shape) || o.DType != s.DType))
            .Select(s => $"{what} {s.Name} is {Shapes.Describe(s.Shape)} {s.DType}, the checkpoint's is {Shapes.Describe(savedByName[s.Name].Shape)} {savedByName[s.Name].DType}"));
        return differences.Count <= 5 ? differences : differences.Take(5).Append($"and {differences.Count - 5} more {what} differences");
    }
}
