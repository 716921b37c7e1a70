namespace KnowledgeDistillation.Training;

/// <summary>A checkpoint folder as listed: its path and step, and what its manifest says when it can be read.</summary>
/// <param name="Path">The folder, <c>checkpoint-{step}</c>.</param>
/// <param name="Step">The step, from the folder's name.</param>
/// <param name="WrittenAt">When it was written (from its manifest), or null when the manifest is missing or damaged.</param>
/// <param name="LibraryVersion">The library version that wrote it, or null likewise.</param>
public sealed record CheckpointInfo(string Path, long Step, DateTimeOffset? WrittenAt, string? LibraryVersion);

/// <summary>The outcome of <see cref="Checkpoints.Verify"/>.</summary>
/// <param name="Path">The folder verified.</param>
/// <param name="Step">The step its manifest records, or null when the manifest is unreadable.</param>
/// <param name="Problem">What is missing or damaged, naming the file; null when everything verified.</param>
public sealed record CheckpointVerification(string Path, long? Step, string? Problem)
{
    /// <summary>True when the manifest, every file's length and SHA-256, and the trainer state verified.</summary>
    public bool IsValid => Problem is null;
}

/// <summary>
/// Lists, verifies and prunes the checkpoints a <see cref="DistillationTrainer{TInput}"/> writes into its
/// <see cref="DistillationTrainerOptions.CheckpointDirectory"/>. Safe to call while no trainer writes into the folder.
/// </summary>
public static class Checkpoints
{
    /// <summary>The complete checkpoints (renamed into place) in <paramref name="directory"/>, oldest step first; none when the folder does not exist.</summary>
    public static IReadOnlyList<CheckpointInfo> List(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        return Folders(directory).Select(c => Describe(c.Path, c.Step)).ToArray();
    }

    /// <summary>The <c>checkpoint-{step}</c> folders, oldest step first, without reading their manifests.</summary>
    internal static IReadOnlyList<(string Path, long Step)> Folders(string directory) =>
        !Directory.Exists(directory)
            ? []
            : Directory.GetDirectories(directory, CheckpointStore.Prefix + "*")
                .Select(path => (Path: path, Step: CheckpointStore.StepOf(path)))
                .Where(c => c.Step is not null)
                .OrderBy(c => c.Step)
                .Select(c => (c.Path, c.Step!.Value))
                .ToArray();

    /// <summary>Checks a checkpoint's manifest, every file's length and SHA-256, and its trainer state; changes nothing.</summary>
    /// <param name="checkpoint">A <c>checkpoint-{step}</c> folder.</param>
    public static CheckpointVerification Verify(string checkpoint)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpoint);
        try
        {
            VerifiedCheckpoint verified = CheckpointStore.Verify(checkpoint);
            return new CheckpointVerification(checkpoint, verified.Manifest.Step, null);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return new CheckpointVerification(checkpoint, null, e.Message);
        }
    }

    /// <summary>Deletes all but the newest <paramref name="keep"/> checkpoints; returns the folders deleted.</summary>
    public static IReadOnlyList<string> Prune(string directory, int keep)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        string[] old = Folders(directory).SkipLast(keep).Select(c => c.Path).ToArray();
        foreach (string path in old) Directory.Delete(path, recursive: true);
        return old;
    }

    /// <summary>
    /// Cleans up after a write that a crash interrupted (a trainer does this when it starts): deletes the temporary
    /// <c>.checkpoint-{step}.tmp-*</c> folders, and for each <c>.checkpoint-{step}.old-*</c> folder (a checkpoint set
    /// aside while a new one of the same step was renamed into place) puts it back as <c>checkpoint-{step}</c> when that
    /// step has no checkpoint, or deletes it when the new one made it. Returns the folders deleted or put back. Never
    /// call it while a trainer writes into the same folder.
    /// </summary>
    public static IReadOnlyList<string> RemoveIncompleteWrites(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Directory.Exists(directory)) return [];
        var handled = new List<string>();
        foreach (string aside in Directory.GetDirectories(directory, "." + CheckpointStore.Prefix + "*" + CheckpointStore.AsideMarker + "*").Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(aside);
            string final = Path.Combine(directory, name[1..name.IndexOf(CheckpointStore.AsideMarker, StringComparison.Ordinal)]);
            if (Directory.Exists(final)) Directory.Delete(aside, recursive: true);
            else Directory.Move(aside, final);
            handled.Add(aside);
        }
        string[] stale = Directory.GetDirectories(directory, "." + CheckpointStore.Prefix + "*.tmp-*");
        foreach (string path in stale) Directory.Delete(path, recursive: true);
        handled.AddRange(stale);
        return handled;
    }

    private static CheckpointInfo Describe(string path, long step)
    {
        try
        {
            CheckpointManifest manifest = CheckpointManifest.Read(Path.Combine(path, CheckpointManifest.FileName));
            return new CheckpointInfo(path, step, manifest.WrittenAt, manifest.LibraryVersion);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return new CheckpointInfo(path, step, null, null);
        }
    }
}
