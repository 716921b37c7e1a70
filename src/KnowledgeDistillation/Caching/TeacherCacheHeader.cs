using System.Buffers.Binary;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// The 64-byte header of a teacher-cache file, little-endian. After it come the examples, each one block:
/// its rows' probabilities (float16, <c>[rows, k + 1]</c>, the tail mass last), then their class indices
/// (<c>[rows, k]</c>, uint16 when the vocabulary fits, int32 otherwise).
/// </summary>
internal sealed record TeacherCacheHeader(long Examples, long RowsPerExample, long Classes, int K, int IndexBytes, int Rank, double Temperature)
{
    public const int Size = 64;
    private const int Version = 1;
    private static ReadOnlySpan<byte> Magic => "KDTC"u8;

    public long ValueBytesPerExample => RowsPerExample * (K + 1) * 2;

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
        if (version != Version) throw new InvalidDataException($"{path} is a version {version} teacher cache; this library reads version {Version}.");
        var header = new TeacherCacheHeader(
            BinaryPrimitives.ReadInt64LittleEndian(b[8..]), BinaryPrimitives.ReadInt64LittleEndian(b[16..]), BinaryPrimitives.ReadInt64LittleEndian(b[24..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[32..]), BinaryPrimitives.ReadInt32LittleEndian(b[36..]), BinaryPrimitives.ReadInt32LittleEndian(b[40..]),
            BinaryPrimitives.ReadDoubleLittleEndian(b[48..]));
        long expected = Size + header.Examples * header.BytesPerExample;
        if (fileLength != expected)
        {
            throw new InvalidDataException($"{path} is {fileLength} bytes but its header describes {expected} ({header.Examples} examples); the file is truncated or damaged.");
        }
        return header;
    }
}
