using static TorchSharp.torch;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// How a teacher cache and the teacher wire store top-k class ids: 2 bytes each (uint16, kept in int16's bits) when
/// every class fits, 4 bytes (int32) otherwise, little-endian. One place, so the two formats cannot drift apart.
/// </summary>
public static class StoredClassIds
{
    /// <summary>Bytes per class id for <paramref name="classes"/> classes: 2 up to 65,536 classes, else 4.</summary>
    public static int BytesFor(long classes) => classes <= 65_536 ? 2 : 4;

    /// <summary>The ids' bytes as stored, in row-major order.</summary>
    /// <param name="classIds">Integer class ids, any shape, any device.</param>
    /// <param name="indexBytes">2 or 4 (<see cref="BytesFor"/>).</param>
    public static byte[] Encode(Tensor classIds, int indexBytes)
    {
        ArgumentNullException.ThrowIfNull(classIds);
        using var scope = NewDisposeScope();
        Tensor ids = classIds.to(ScalarType.Int64).cpu();
        Tensor stored = indexBytes == 2 ? (ids - ids.ge(32768).to(ScalarType.Int64) * 65536).to(ScalarType.Int16) : ids.to(ScalarType.Int32);
        return stored.contiguous().bytes.ToArray();
    }

    /// <summary>int64 class ids of <paramref name="shape"/> from their stored bytes (on the CPU).</summary>
    public static Tensor Decode(byte[] bytes, long[] shape, int indexBytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        using var scope = NewDisposeScope();
        Tensor stored = empty(shape, indexBytes == 2 ? ScalarType.Int16 : ScalarType.Int32);
        stored.bytes = bytes;
        Tensor ids = indexBytes == 2 ? stored.to(ScalarType.Int64).bitwise_and(0xFFFF) : stored.to(ScalarType.Int64);
        return ids.MoveToOuterDisposeScope();
    }
}
