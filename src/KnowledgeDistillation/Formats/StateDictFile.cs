using System.Collections;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Formats;

/// <summary>
/// Reads a PyTorch state dict — name → tensor — from a safetensors file, a PyTorch <c>.bin</c>/<c>.pt</c>/<c>.pth</c>
/// file, or a Hugging Face checkpoint folder (single file, or shards listed by <c>model.safetensors.index.json</c> /
/// <c>pytorch_model.bin.index.json</c>), through TorchSharp.PyBridge. Tensors keep the file's dtype.
/// </summary>
/// <remarks>
/// A <c>.bin</c>/<c>.pt</c> file is a Python pickle: treat it as untrusted. PyBridge's unpickler is a .NET
/// reimplementation that runs no Python code and only builds the objects it knows; on top of that, this reader
/// accepts a file only when every entry is a tensor, and reports anything else — a truncated file, a pickle that
/// names an unknown class, a value that is not a tensor — as <see cref="InvalidDataException"/> naming the file.
/// Prefer safetensors, which holds raw tensor data and a JSON header and nothing executable.
/// </remarks>
public static class StateDictFile
{
    /// <summary>The file names looked for in a checkpoint folder, in order of preference (an index names shards).</summary>
    public static IReadOnlyList<string> CheckpointFileNames { get; } =
        ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"];

    /// <summary>Reads every tensor of <paramref name="path"/>; the caller owns (and disposes) the tensors.</summary>
    /// <exception cref="FileNotFoundException">Nothing to read at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a state dict of tensors, or an index names a shard that is missing or incomplete.</exception>
    public static Dictionary<string, Tensor> Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string file = Resolve(path);
        return file.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase) ? ReadSharded(file) : ReadFile(file);
    }

    /// <summary>The file <see cref="Read"/> reads for <paramref name="path"/> (an index file for a sharded checkpoint).</summary>
    public static string Resolve(string path)
    {
        if (File.Exists(path)) return path;
        if (Directory.Exists(path))
        {
            string? found = CheckpointFileNames.Select(name => Path.Combine(path, name)).FirstOrDefault(File.Exists);
            if (found is not null) return found;
            throw new FileNotFoundException($"{path} contains none of {string.Join(", ", CheckpointFileNames)}.", path);
        }
        throw new FileNotFoundException($"No checkpoint file or folder at {path}.", path);
    }

    private static Dictionary<string, Tensor> ReadFile(string file)
    {
        bool safetensors = file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);
        try
        {
            if (safetensors) SafetensorsFile.ReadHeader(file); // a clear error for a damaged header before PyBridge reads it
            return safetensors ? Safetensors.LoadStateDict(file) : FromPickle(file);
        }
        catch (Exception e) when (e is not OutOfMemoryException && !(e is InvalidDataException && e.Message.StartsWith(file, StringComparison.Ordinal)))
        {
            // Every failure names the file: a truncated .bin's zip error (itself an InvalidDataException) names none.
            throw new InvalidDataException(
                $"{file} could not be read as a {(safetensors ? "safetensors" : "PyTorch pickle")} state dict: {e.Message}", e);
        }
    }

    private static Dictionary<string, Tensor> ReadSharded(string index)
    {
        Dictionary<string, string> weightMap = ShardIndex.Read(index).WeightMap;
        string folder = Path.GetDirectoryName(Path.GetFullPath(index))!;
        string[] shards = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        string? missing = shards.FirstOrDefault(s => !File.Exists(Path.Combine(folder, s)));
        if (missing is not null)
        {
            throw new InvalidDataException($"{index} lists the shard {missing}, which is not in {folder}.");
        }
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (string shard in shards)
            {
                string shardPath = Path.Combine(folder, shard);
                foreach ((string name, Tensor tensor) in ReadFile(shardPath))
                {
                    if (!weightMap.TryGetValue(name, out string? listed) || listed != shard)
                    {
                        tensor.Dispose();
                        throw new InvalidDataException($"{shardPath} holds {name}, which {index} {(listed is null ? "does not list" : $"places in {listed}")}.");
                    }
                    result[name] = tensor;
                }
            }
            string? absent = weightMap.Keys.FirstOrDefault(k => !result.ContainsKey(k));
            if (absent is not null)
            {
                throw new InvalidDataException($"{index} places {absent} in {weightMap[absent]}, but that shard does not hold it.");
            }
            return result;
        }
        catch
        {
            foreach (Tensor t in result.Values) t.Dispose();
            throw;
        }
    }
    private static Dictionary<string, Tensor> FromPickle(string file)
    {
        Hashtable table = PyTorchUnpickler.UnpickleStateDict(file);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in table)
        {
            if (entry.Key is not string name || entry.Value is not Tensor tensor)
            {
                foreach (Tensor t in table.Values.OfType<Tensor>()) t.Dispose();
                throw new InvalidDataException(
                    $"{file} is not a state dict of tensors: entry {entry.Key} holds {entry.Value?.GetType().Name ?? "null"}.");
            }
            result[name] = tensor;
        }
        return result;
    }
}
