using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

/// <summary>
/// Reads a module state written by TorchSharp's <c>Module.save</c> (an LEB128 entry count, then per entry a
/// length-prefixed name, the dtype, the rank, the shape and the raw bytes) into new CPU tensors, checking each entry
/// against the live module before any byte of it is read. Nothing of the live module is touched: the caller copies
/// the temporaries in once every file of the checkpoint has been read.
/// </summary>
internal static class ModuleStateFile
{
    /// <summary>
    /// The file's tensors, one per entry of <paramref name="module"/>'s state dict (or of the <paramref name="only"/>
    /// names of it), on the CPU and outside any dispose scope.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is truncated, has trailing bytes, or does not match the module; the message names the file.</exception>
    public static Dictionary<string, Tensor> Read(string path, nn.Module module, IReadOnlyCollection<string>? only = null)
    {
        Dictionary<string, Tensor> live = module.state_dict();
        if (only is not null) live = live.Where(e => only.Contains(e.Key)).ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
        var read = new Dictionary<string, Tensor>(live.Count);
        try
        {
            using FileStream stream = File.OpenRead(path);
            using var reader = new BinaryReader(stream);
            long count = ReadLength(reader, path, "entry count");
            if (count != live.Count) throw Damaged(path, $"it holds {count} entries, the module has {live.Count}");
            for (long i = 0; i < count; i++)
            {
                string name = reader.ReadString();
                if (!live.TryGetValue(name, out Tensor? target)) throw Damaged(path, $"entry {i} is named \"{name}\", which the module does not have");
                if (read.ContainsKey(name)) throw Damaged(path, $"entry \"{name}\" appears twice");
                var dtype = (ScalarType)ReadLength(reader, path, $"dtype of \"{name}\"");
                if (dtype != target.dtype) throw Damaged(path, $"\"{name}\" is {dtype}, the module's is {target.dtype}");
                long rank = ReadLength(reader, path, $"rank of \"{name}\"");
                if (rank != target.dim()) throw Damaged(path, $"\"{name}\" has rank {rank}, the module's has rank {target.dim()}");
                long[] shape = new long[rank];
                for (int d = 0; d < rank; d++) shape[d] = ReadLength(reader, path, $"shape of \"{name}\"");
                if (!shape.SequenceEqual(target.shape))
                {
                    throw Damaged(path, $"\"{name}\" has shape {Shapes.Describe(shape)}, the module's has {Shapes.Describe(target.shape)}");
                }
                long bytes = target.NumberOfElements * target.ElementSize;
                if (stream.Length - stream.Position < bytes) throw Damaged(path, $"it ends inside the data of \"{name}\"");
                Tensor tensor = empty(shape, dtype, CPU).DetachFromDisposeScope();
                read[name] = tensor;
                tensor.ReadBytesFromStream(stream);
            }
            if (stream.Position != stream.Length) throw Damaged(path, $"{stream.Length - stream.Position} bytes follow the last entry");
            return read;
        }
        catch (Exception e) when (e is IOException or FormatException)
        {
            Dispose(read);
            throw Damaged(path, e.Message, e);
        }
        catch
        {
            Dispose(read);
            throw;
        }
    }

    /// <summary>Copies <paramref name="values"/> into the module's live parameters and buffers of those names.</summary>
    public static void CopyInto(nn.Module module, Dictionary<string, Tensor> values)
    {
        using var noGrad = no_grad();
        foreach ((string name, Tensor target) in module.state_dict())
        {
            if (values.TryGetValue(name, out Tensor? value)) target.copy_(value);
        }
    }

    /// <summary>Writes <paramref name="entries"/> in the layout TorchSharp's <c>Module.save</c> uses (and <see cref="Read"/> reads).</summary>
    public static void Write(string path, IReadOnlyList<(string Name, Tensor Tensor)> entries)
    {
        using FileStream stream = File.Create(path);
        using var writer = new BinaryWriter(stream);
        WriteLength(writer, entries.Count);
        foreach ((string name, Tensor tensor) in entries)
        {
            writer.Write(name);
            WriteLength(writer, (long)tensor.dtype);
            WriteLength(writer, tensor.dim());
            foreach (long d in tensor.shape) WriteLength(writer, d);
            writer.Flush();
            using Tensor bytes = tensor.detach().cpu().contiguous();
            bytes.WriteBytesToStream(stream);
        }
    }

    private static void WriteLength(BinaryWriter writer, long value)
    {
        do
        {
            byte b = (byte)(value & 0x7f);
            value >>= 7;
            writer.Write(value > 0 ? (byte)(b | 0x80) : b);
        }
        while (value > 0);
    }

    public static void Dispose(Dictionary<string, Tensor>? values)
    {
        if (values is null) return;
        foreach (Tensor t in values.Values) t.Dispose();
    }

    private static long ReadLength(BinaryReader reader, string path, string what)
    {
        long result = 0;
        for (int shift = 0; ; shift += 7)
        {
            if (shift > 56) throw Damaged(path, $"the {what} is not a valid number");
            byte b = reader.ReadByte();
            result |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return result;
        }
    }

    private static InvalidDataException Damaged(string path, string problem, Exception? inner = null) =>
        new($"{path} cannot be restored: {problem}.", inner);
}
