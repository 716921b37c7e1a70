using System.Globalization;
using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

/// <summary>Where a run stands: what a checkpoint restores besides weights and optimizer state.</summary>
internal sealed record TrainerState(long Step, int Epoch, long MicroBatchesIntoEpoch, long SkippedSteps, string RngState, string EpochStartRngState);

/// <summary>
/// Checkpoint folders <c>checkpoint-{step}</c> holding the student's and the objective's weights (TorchSharp
/// format), the optimizer state and <c>trainer.json</c> (step, data position, RNG states). A checkpoint is written
/// into a temporary folder and renamed into place, so a crash mid-write never leaves a half-written checkpoint
/// under a real name; older checkpoints beyond the number to keep are deleted afterwards.
/// </summary>
internal static class CheckpointStore
{
    private const string Prefix = "checkpoint-";
    private const string StudentFile = "student.dat", ObjectiveFile = "objective.dat", OptimizerFile = "optimizer.dat", StateFile = "trainer.json";

    public static string Write(string directory, int keep, nn.Module student, nn.Module objective, OptimizerHelper optimizer, TrainerState state)
    {
        Directory.CreateDirectory(directory);
        string final = Path.Combine(directory, Prefix + state.Step.ToString(CultureInfo.InvariantCulture));
        string temporary = Path.Combine(directory, $".{Prefix}{state.Step}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temporary);
        try
        {
            student.save(Path.Combine(temporary, StudentFile));
            objective.save(Path.Combine(temporary, ObjectiveFile));
            optimizer.save_state_dict(Path.Combine(temporary, OptimizerFile));
            File.WriteAllText(Path.Combine(temporary, StateFile), JsonSerializer.Serialize(state));
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(temporary, final);
        }
        finally
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        }
        foreach (string old in List(directory).SkipLast(keep)) Directory.Delete(old, recursive: true);
        return final;
    }

    /// <summary>The checkpoint to resume from: "latest" in <paramref name="directory"/>, or a folder path.</summary>
    public static string Locate(string resumeFrom, string? directory)
    {
        if (resumeFrom == "latest")
        {
            return List(directory!).LastOrDefault()
                ?? throw new InvalidOperationException($"ResumeFrom is \"latest\" but {directory} holds no {Prefix}* folder.");
        }
        if (!File.Exists(Path.Combine(resumeFrom, StateFile)))
        {
            throw new InvalidOperationException($"ResumeFrom = {resumeFrom} is not a checkpoint folder (no {StateFile} in it).");
        }
        return resumeFrom;
    }

    public static TrainerState Read(string checkpoint, nn.Module student, nn.Module objective, OptimizerHelper optimizer)
    {
        TrainerState state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(Path.Combine(checkpoint, StateFile)))
            ?? throw new InvalidDataException($"{checkpoint}/{StateFile} is empty.");
        student.load(Path.Combine(checkpoint, StudentFile));
        objective.load(Path.Combine(checkpoint, ObjectiveFile));
        optimizer.load_state_dict(Path.Combine(checkpoint, OptimizerFile));
        return state;
    }

    public static string CaptureRng()
    {
        using Tensor state = get_rng_state();
        return Convert.ToBase64String(state.data<byte>().ToArray());
    }

    public static void RestoreRng(string base64)
    {
        using Tensor state = tensor(Convert.FromBase64String(base64), dtype: ScalarType.Byte);
        set_rng_state(state);
    }

    private static IEnumerable<string> List(string directory) =>
        !Directory.Exists(directory)
            ? []
            : Directory.GetDirectories(directory, Prefix + "*")
                .Select(d => (Path: d, Step: long.TryParse(Path.GetFileName(d)[Prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out long s) ? s : -1))
                .Where(d => d.Step >= 0)
                .OrderBy(d => d.Step)
                .Select(d => d.Path);
}
