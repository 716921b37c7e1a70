using System.Collections;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>
/// Reads a PyTorch state dict — name → tensor — from a safetensors file, a PyTorch <c>.bin</c>/<c>.pt</c>/<c>.pth</c>
/// file, or a Hugging Face checkpoint folder, through TorchSharp.PyBridge.
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
    /// <summary>The file names looked for in a checkpoint folder, in order of preference.</summary>
    public static IReadOnlyList<string> CheckpointFileNames { get; } = ["model.safetensors", "pytorch_model.bin"];

    /// <summary>Reads every tensor of <paramref name="path"/>; the caller owns (and disposes) the tensors.</summary>
    /// <exception cref="FileNotFoundException">Nothing to read at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a state dict of tensors.</exception>
    public static Dictionary<string, Tensor> Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string file = Resolve(path);
        bool safetensors = file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);
        try
        {
            return safetensors ? Safetensors.LoadStateDict(file) : FromPickle(file);
        }
        catch (Exception e) when (e is not InvalidDataException and not OutOfMemoryException)
        {
            throw new InvalidDataException(
                $"{file} could not be read as a {(safetensors ? "safetensors" : "PyTorch pickle")} state dict: {e.Message}", e);
        }
    }

    private static string Resolve(string path)
    {
        if (File.Exists(path)) return path;
        if (Directory.Exists(path))
        {
            string? found = CheckpointFileNames.Select(name => Path.Combine(path, name)).FirstOrDefault(File.Exists);
            if (found is not null) return found;
            if (Directory.EnumerateFiles(path, "*.index.json").Any())
            {
                throw new InvalidDataException($"{path} holds a sharded checkpoint (an *.index.json file); merge the shards into one file first.");
            }
            throw new FileNotFoundException($"{path} contains none of {string.Join(", ", CheckpointFileNames)}.", path);
        }
        throw new FileNotFoundException($"No checkpoint file or folder at {path}.", path);
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
