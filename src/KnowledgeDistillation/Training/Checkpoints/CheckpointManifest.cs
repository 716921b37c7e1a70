using System.Reflection;
using System.Security.Cryptography;
using System.Text.Json;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

/// <summary>A file of a checkpoint: its length and SHA-256 (lower-case hex).</summary>
internal sealed record FileDigest(long Length, string Sha256);

/// <summary>A state-dict entry: its name, shape and element type.</summary>
internal sealed record TensorSignature(string Name, long[] Shape, string DType)
{
    public static TensorSignature[] Of(nn.Module module) =>
        module.state_dict().Select(p => new TensorSignature(p.Key, p.Value.shape, p.Value.dtype.ToString())).ToArray();

    public override string ToString() => $"{Name} {Shapes.Describe(Shape)} {DType}";
}

/// <summary>
/// When the student has frozen parameters (LoRA adapters, frozen layers), its checkpoint file holds only what trains and
/// its buffers; the frozen rest is identified by <see cref="FrozenDigest"/> (SHA-256 over each frozen tensor's name,
/// dtype, shape and bytes), which must match the student a run resumes into.
/// </summary>
/// <param name="Names">The tensors the student file holds.</param>
/// <param name="FrozenDigest">The digest of the frozen tensors.</param>
/// <param name="FrozenTensors">How many tensors are frozen (for messages).</param>
internal sealed record StoredStudentPart(IReadOnlyList<string> Names, string FrozenDigest, int FrozenTensors);

/// <summary>
/// <c>manifest.json</c>, written last into a checkpoint folder: what every other file must hash to, what the
/// checkpoint belongs to (the student's and objective's state-dict signatures, the optimizer type) and the settings
/// that give resuming its meaning. <see cref="Checksum"/> is the SHA-256 of the manifest itself serialised with an
/// empty checksum, so a damaged manifest is detected like any other damaged file.
/// </summary>
internal sealed record CheckpointManifest(
    int Format,
    string LibraryVersion,
    long Step,
    DateTimeOffset WrittenAt,
    IReadOnlyDictionary<string, FileDigest> Files,
    IReadOnlyList<TensorSignature> Student,
    IReadOnlyList<TensorSignature> Objective,
    string Optimizer,
    CheckpointSettings Settings,
    string Checksum = "",
    StoredStudentPart? StoredStudent = null)
{
    public const string FileName = "manifest.json";
    public const int CurrentFormat = 1;

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static string CurrentLibraryVersion { get; } =
        typeof(CheckpointManifest).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    public byte[] Serialize()
    {
        CheckpointManifest sealedManifest = this with { Checksum = ComputeChecksum() };
        return JsonSerializer.SerializeToUtf8Bytes(sealedManifest, Json);
    }

    /// <summary>Reads and self-checks a manifest; throws <see cref="InvalidDataException"/> naming the file and the problem.</summary>
    public static CheckpointManifest Read(string path)
    {
        if (!File.Exists(path)) throw new InvalidDataException($"{path} is missing: the checkpoint is incomplete or was written by an older version.");
        CheckpointManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<CheckpointManifest>(Formats.JsonFile.ReadBounded(path), Json); // bounded: a link to a device cannot make it read forever
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a valid checkpoint manifest: {e.Message}", e);
        }
        if (manifest is null || manifest.Files is null || manifest.Student is null || manifest.Objective is null || manifest.Settings is null ||
            manifest.Optimizer is null || manifest.Checksum is null)
        {
            throw new InvalidDataException($"{path} lacks required fields of a checkpoint manifest.");
        }
        if (manifest.Format != CurrentFormat)
        {
            throw new InvalidDataException($"{path} has checkpoint format {manifest.Format}; this version reads format {CurrentFormat}.");
        }
        if (!string.Equals(manifest.Checksum, manifest.ComputeChecksum(), StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{path} is damaged: its content does not match its own checksum.");
        }
        return manifest;
    }

    private string ComputeChecksum() =>
        Convert.ToHexString(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(this with { Checksum = "" }, Json))).ToLowerInvariant();

    public static FileDigest Digest(string path)
    {
        using FileStream stream = File.OpenRead(path);
        return new FileDigest(stream.Length, Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant());
    }

}
