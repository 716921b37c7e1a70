using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Formats;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="DType">The format's dtype name (<c>F32</c>, <c>BF16</c>, …).</param>
/// <param name="Shape">The tensor's shape.</param>
/// <param name="Begin">First byte of its data, counted from the end of the header.</param>
/// <param name="End">One past its last byte.</param>
public sealed record SafetensorsEntry(string DType, long[] Shape, long Begin, long End);

/// <summary>A safetensors header: the entries by name and the optional <c>__metadata__</c> strings.</summary>
public sealed record SafetensorsHeader(IReadOnlyDictionary<string, SafetensorsEntry> Entries, IReadOnlyDictionary<string, string> Metadata);

/// <summary>
/// The safetensors format (an 8-byte little-endian header length, a JSON header, then the raw little-endian tensor
/// data): writes files the way Hugging Face does — with <c>__metadata__</c> <c>{"format": "pt"}</c> by default and the
/// header padded to 8 bytes — and checks headers before anything is read.
/// </summary>
public static class SafetensorsFile
{
    private const long MaxHeaderBytes = 100L << 20;

    private static readonly Dictionary<ScalarType, string> Names = new()
    {
        [ScalarType.Float32] = "F32", [ScalarType.Float16] = "F16", [ScalarType.BFloat16] = "BF16", [ScalarType.Float64] = "F64",
        [ScalarType.Int64] = "I64", [ScalarType.Int32] = "I32", [ScalarType.Int16] = "I16", [ScalarType.Int8] = "I8",
        [ScalarType.Byte] = "U8", [ScalarType.Bool] = "BOOL",
    };

    private static readonly Dictionary<string, int> ElementBytes = new(StringComparer.Ordinal)
    {
        ["F64"] = 8, ["I64"] = 8, ["U64"] = 8, ["F32"] = 4, ["I32"] = 4, ["U32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I16"] = 2,
        ["U16"] = 2, ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1, ["F8_E4M3"] = 1, ["F8_E5M2"] = 1,
    };

    /// <summary>What Hugging Face writes as <c>__metadata__</c>.</summary>
    public static IReadOnlyDictionary<string, string> PyTorchMetadata { get; } = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>Writes <paramref name="tensors"/> (any device; copied to the CPU as needed) to <paramref name="path"/>.</summary>
    /// <param name="path">The file to write (replaced if it exists).</param>
    /// <param name="tensors">Name → tensor; written in name order.</param>
    /// <param name="metadata">The <c>__metadata__</c> strings; null writes <see cref="PyTorchMetadata"/>.</param>
    /// <exception cref="ArgumentException">A tensor has a dtype the format cannot hold (the message names it).</exception>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        string[] names = tensors.Keys.Order(StringComparer.Ordinal).ToArray();
        var header = new JsonObject();
        long offset = 0;
        foreach (string name in names)
        {
            Tensor t = tensors[name];
            if (!Names.TryGetValue(t.dtype, out string? dtype))
            {
                throw new ArgumentException($"Tensor {name} has dtype {t.dtype}, which safetensors cannot hold.", nameof(tensors));
            }
            long bytes = t.numel() * t.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var meta = new JsonObject();
        foreach ((string key, string value) in metadata ?? PyTorchMetadata) meta[key] = value;
        header["__metadata__"] = meta;

        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padding = (8 - json.Length % 8) % 8;
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)(json.Length + padding));
        stream.Write(length);
        stream.Write(json);
        for (int i = 0; i < padding; i++) stream.WriteByte((byte)' ');
        foreach (string name in names)
        {
            using var scope = NewDisposeScope();
            Tensor t = tensors[name].detach().cpu().contiguous();
            stream.Write(t.bytes);
        }
    }

    /// <summary>Reads and checks the header of <paramref name="path"/>: its length, its JSON, every entry's dtype, shape and data range.</summary>
    /// <exception cref="InvalidDataException">The header is damaged; the message names the file and the entry.</exception>
    public static SafetensorsHeader ReadHeader(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
        long fileLength = stream.Length;
        Span<byte> prefix = stackalloc byte[8];
        if (stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
        {
            throw new InvalidDataException($"{path} is {fileLength} bytes long, too short for a safetensors header (8-byte length first).");
        }
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderBytes || (long)headerLength > fileLength - 8)
        {
            throw new InvalidDataException($"{path} declares a {headerLength}-byte safetensors header, but the file holds only {fileLength - 8} bytes after the length (truncated or not safetensors).");
        }
        byte[] json = new byte[headerLength];
        stream.ReadExactly(json);
        long dataLength = fileLength - 8 - (long)headerLength;

        JsonObject root;
        try
        {
            root = JsonNode.Parse(json)?.AsObject() ?? throw new InvalidDataException($"{path}: the safetensors header is JSON null.");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: the safetensors header is not a JSON object: {e.Message}", e);
        }

        var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach ((string name, JsonNode? node) in root)
        {
            if (name == "__metadata__")
            {
                if (node is JsonObject m) foreach ((string k, JsonNode? v) in m) metadata[k] = v?.ToString() ?? "";
                continue;
            }
            entries[name] = Entry(path, name, node, dataLength);
        }
        RequireContiguous(path, entries, dataLength);
        return new SafetensorsHeader(entries, metadata);
    }

    /// <summary>
    /// As the format's reference reader requires: the entries' byte ranges, in order, tile the data exactly — no two
    /// share bytes (one range read as two tensors), no gap, nothing after the last.
    /// </summary>
    private static void RequireContiguous(string path, Dictionary<string, SafetensorsEntry> entries, long dataLength)
    {
        long expected = 0;
        string? previous = null;
        foreach ((string name, SafetensorsEntry entry) in entries.OrderBy(e => e.Value.Begin).ThenBy(e => e.Value.End))
        {
            if (entry.Begin != expected)
            {
                string what = entry.Begin < expected ? $"overlaps {previous}, which ends at byte {expected}" : $"leaves bytes {expected} to {entry.Begin} unused";
                throw new InvalidDataException($"{path}: the safetensors entry {name} starts at byte {entry.Begin} and {what}; entries must tile the data.");
            }
            expected = entry.End;
            previous = name;
        }
        if (expected != dataLength)
        {
            throw new InvalidDataException($"{path}: the safetensors entries cover {expected} data bytes, but the file holds {dataLength} after the header.");
        }
    }

    private static SafetensorsEntry Entry(string path, string name, JsonNode? node, long dataLength)
    {
        try
        {
            string dtype = node?["dtype"]?.GetValue<string>() ?? throw Bad("has no dtype");
            long[] shape = node["shape"]?.AsArray().Select(d => d!.GetValue<long>()).ToArray() ?? throw Bad("has no shape");
            long[] offsets = node["data_offsets"]?.AsArray().Select(d => d!.GetValue<long>()).ToArray() ?? throw Bad("has no data_offsets");
            if (!ElementBytes.TryGetValue(dtype, out int size)) throw Bad($"has the unknown dtype {dtype}");
            if (shape.Any(d => d < 0)) throw Bad($"has a negative dimension in {Shapes.Describe(shape)}");
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataLength)
            {
                throw Bad($"has data_offsets [{string.Join(", ", offsets)}] outside the {dataLength} data bytes (truncated file?)");
            }
            long expected;
            try
            {
                expected = checked(shape.Aggregate(1L, (a, d) => checked(a * d)) * size);
            }
            catch (OverflowException)
            {
                throw Bad($"declares {dtype} {Shapes.Describe(shape)}, more bytes than any file holds");
            }
            if (offsets[1] - offsets[0] != expected)
            {
                throw Bad($"spans {offsets[1] - offsets[0]} bytes, but {dtype} {Shapes.Describe(shape)} needs {expected}");
            }
            return new SafetensorsEntry(dtype, shape, offsets[0], offsets[1]);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
        {
            throw new InvalidDataException($"{path}: the safetensors entry {name} is malformed: {e.Message}", e);
        }

        InvalidDataException Bad(string what) => new($"{path}: the safetensors entry {name} {what}.");
    }
}
