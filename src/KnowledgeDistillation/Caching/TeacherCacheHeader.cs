using System.Buffers.Binary;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// The 64-byte header of a teacher-cache file, little-endian. After it come the examples, each one block. A top-k
/// cache (version 1) stores its rows' probabilities (float16, <c>[rows, k + 1]</c>, the tail mass last), then their
/// class indices (<c>[rows, k]</c>, uint16 when the vocabulary fits, int32 otherwise). A values cache (version 2,
/// its content at byte 44) stores the outputs themselves, <c>[rows, C]</c> float16 or float32, and no indices.
/// </summary>
internal sealed record TeacherCacheHeader(long Examples, long RowsPerExample, long Classes, int K, int IndexBytes, int Rank, double Temperature,
    TeacherCacheContent Content = TeacherCacheContent.TopKProbabilities)
{
    public const int Size = 64;
    private static ReadOnlySpan<byte> Magic => "KDTC"u8;

    /// <summary>Version 1 is the top-k layout of release 0.1.0 (unchanged, so its readers still open such files); version 2 adds the content field.</summary>
    private int Version => Content == TeacherCacheContent.TopKProbabilities ? 1 : 2;

    /// <summary>A values cache of <paramref name="classes"/> outputs per row.</summary>
    public static TeacherCacheHeader ForValues(long rows, long classes, int rank, TeacherCacheContent content) =>
        new(0, rows, classes, (int)classes, 0, rank, 1.0, content);

    public int ValueBytes => Content == TeacherCacheContent.Float32Values ? 4 : 2;

    public long ValueBytesPerExample => Content == TeacherCacheContent.TopKProbabilities ? RowsPerExample * (K + 1) * 2 : RowsPerExample * Classes * ValueBytes;

    public long IndexBytesPerExample => RowsPerExample * K * IndexBytes;

    public long BytesPerExample => ValueBytesPerExample + IndexBytesPerExample;

    public static int IndexBytesFor(long classes) => classes <= 65536 ? 2 : 4;

    public byte[] ToBytes()
    {
        var b = new byte[Size];
        Magic.CopyTo(b);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4), Version);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(8), Examples);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(16), RowsPerExample);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(24), Classes);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(32), K);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(36), IndexBytes);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(40), Rank);
        if (Version >= 2) BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(44), (int)Content);
        BinaryPrimitives.WriteDoubleLittleEndian(b.AsSpan(48), Temperature);
        return b;
    }

    public static TeacherCacheHeader Parse(ReadOnlySpan<byte> b, string path, long fileLength)
    {
        if (b.Length < Size || !b[..4].SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{path} is not a teacher cache (no KDTC header).");
        }
        int version = BinaryPrimitives.ReadInt32LittleEndian(b[4..]);
        if (version is not (1 or 2)) throw new InvalidDataException($"{path} is a version {version} teacher cache; this library reads versions 1 and 2.");
        var content = version == 1 ? TeacherCacheContent.TopKProbabilities : (TeacherCacheContent)BinaryPrimitives.ReadInt32LittleEndian(b[44..]);
        if (!Enum.IsDefined(content)) throw new InvalidDataException($"{path} declares an unknown content ({(int)content}); the file is damaged or from a newer library.");
        var header = new TeacherCacheHeader(
            BinaryPrimitives.ReadInt64LittleEndian(b[8..]), BinaryPrimitives.ReadInt64LittleEndian(b[16..]), BinaryPrimitives.ReadInt64LittleEndian(b[24..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[32..]), BinaryPrimitives.ReadInt32LittleEndian(b[36..]), BinaryPrimitives.ReadInt32LittleEndian(b[40..]),
            BinaryPrimitives.ReadDoubleLittleEndian(b[48..]), content);
        long expected = Size + header.Examples * header.BytesPerExample;
        if (fileLength != expected)
        {
            throw new InvalidDataException($"{path} is {fileLength} bytes but its header describes {expected} ({header.Examples} examples); the file is truncated or damaged.");
        }
        return header;
    }
}

/// <summary>What a teacher cache stores per row.</summary>
public enum TeacherCacheContent
{
    /// <summary>The k most probable classes at the cache's temperature and the tail mass, float16 (soft-target terms).</summary>
    TopKProbabilities = 0,

    /// <summary>The teacher's outputs (logits or an embedding) themselves, float16: about 3 significant digits, half the bytes.</summary>
    Float16Values = 1,

    /// <summary>The teacher's outputs themselves, float32: exactly what the teacher returned.</summary>
    Float32Values = 2,
}
