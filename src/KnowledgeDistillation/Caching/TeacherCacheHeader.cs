using System.Buffers.Binary;
using System.Security.Cryptography;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// The 160-byte header of a teacher-cache file (format 3), little-endian:
/// <list type="table">
/// <item><term>0</term><description>"KDTC", then the format (int32)</description></item>
/// <item><term>8</term><description>examples in this file, rows per example, classes (int64 each)</description></item>
/// <item><term>32</term><description>k, index bytes, rank of the appended logits, content (int32 each)</description></item>
/// <item><term>48</term><description>temperature (float64)</description></item>
/// <item><term>56</term><description>shard index and shard count (int32 each); 0 and 1 for a whole cache</description></item>
/// <item><term>64</term><description>the shard's first example and the examples of the whole set (int64 each)</description></item>
/// <item><term>80</term><description>the identity: SHA-256 of the writer's identity text, or zeros</description></item>
/// <item><term>112</term><description>the checksum: SHA-256 of bytes 0–111 followed by the SHA-256 of the body</description></item>
/// <item><term>144</term><description>zeros</description></item>
/// </list>
/// After it come the examples, each one block: a top-k cache stores its rows' probabilities (float16,
/// <c>[rows, k + 1]</c>, the tail mass last), then their class indices (<c>[rows, k]</c>, uint16 when the vocabulary
/// fits, int32 otherwise); a values cache stores the outputs themselves, <c>[rows, C]</c> float16 or float32. A shard
/// whose range is empty has no layout of its own: rows, classes and rank are 0.
/// </summary>
internal sealed record TeacherCacheHeader(long Examples, long RowsPerExample, long Classes, int K, int IndexBytes, int Rank, double Temperature,
    TeacherCacheContent Content = TeacherCacheContent.TopKProbabilities)
{
    public const int Size = 160;
    public const int Format = 3;
    private const int ChecksumOffset = 112, IdentityOffset = 80;
    private static ReadOnlySpan<byte> Magic => "KDTC"u8;

    public int ShardIndex { get; init; }

    public int ShardCount { get; init; } = 1;

    public long SetStart { get; init; }

    public long SetExamples { get; init; }

    /// <summary>SHA-256 of the writer's identity text (what produced the outputs), or 32 zeros when none was given.</summary>
    public byte[] Identity { get; init; } = new byte[32];

    /// <summary>The layout alone: what shards of one cache must share.</summary>
    public (long Rows, long Classes, int K, int IndexBytes, int Rank, double Temperature, TeacherCacheContent Content) Layout =>
        (RowsPerExample, Classes, K, IndexBytes, Rank, Temperature, Content);

    /// <summary>A shard with no examples carries no layout (nothing was appended to learn it from).</summary>
    public bool HasLayout => RowsPerExample > 0;

    /// <summary>A values cache of <paramref name="classes"/> outputs per row.</summary>
    public static TeacherCacheHeader ForValues(long rows, long classes, int rank, TeacherCacheContent content) =>
        new(0, rows, classes, (int)classes, 0, rank, 1.0, content);

    public int ValueBytes => Content == TeacherCacheContent.Float32Values ? 4 : 2;

    public long ValueBytesPerExample => Content == TeacherCacheContent.TopKProbabilities ? RowsPerExample * (K + 1) * 2 : RowsPerExample * Classes * ValueBytes;

    public long IndexBytesPerExample => RowsPerExample * K * IndexBytes;

    public long BytesPerExample => ValueBytesPerExample + IndexBytesPerExample;

    /// <summary><see cref="BytesPerExample"/> in arithmetic that cannot wrap, for checking a header that may be damaged.</summary>
    private Int128 ExactBytesPerExample => Content == TeacherCacheContent.TopKProbabilities
        ? (Int128)RowsPerExample * ((Int128)K + 1) * 2 + (Int128)RowsPerExample * K * IndexBytes
        : (Int128)RowsPerExample * Classes * ValueBytes;

    public static int IndexBytesFor(long classes) => StoredClassIds.BytesFor(classes);

    public static byte[] IdentityOf(string? identity) =>
        identity is null ? new byte[32] : SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(identity));

    /// <summary>The header's bytes, with the checksum of these fields and a body whose SHA-256 is <paramref name="bodyHash"/>.</summary>
    public byte[] ToBytes(ReadOnlySpan<byte> bodyHash)
    {
        var b = new byte[Size];
        Magic.CopyTo(b);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4), Format);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(8), Examples);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(16), RowsPerExample);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(24), Classes);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(32), K);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(36), IndexBytes);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(40), Rank);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(44), (int)Content);
        BinaryPrimitives.WriteDoubleLittleEndian(b.AsSpan(48), Temperature);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(56), ShardIndex);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(60), ShardCount);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(64), SetStart);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(72), SetExamples);
        Identity.CopyTo(b.AsSpan(IdentityOffset, 32));
        Checksum(b, bodyHash).CopyTo(b.AsSpan(ChecksumOffset, 32));
        return b;
    }

    private static byte[] Checksum(ReadOnlySpan<byte> header, ReadOnlySpan<byte> bodyHash)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(header[..ChecksumOffset]);
        hash.AppendData(bodyHash);
        return hash.GetHashAndReset();
    }

    /// <summary>
    /// Reads and checks a header against the file: every field's range alone and against the others, the file's
    /// length (in arithmetic that cannot wrap), and — reading the body once — the checksum. Each failure names the file.
    /// </summary>
    public static TeacherCacheHeader Read(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        long fileLength = stream.Length;
        var b = new byte[Size];
        int got = stream.ReadAtLeast(b, Size, throwOnEndOfStream: false);
        if (got < 8 || !b.AsSpan(0, 4).SequenceEqual(Magic)) throw new InvalidDataException($"{path} is not a teacher cache (no KDTC header).");
        int format = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(4));
        if (format != Format)
        {
            throw new InvalidDataException(format is 1 or 2
                ? $"{path} is a format {format} teacher cache, written by an earlier development version without checksums or shard records; label the transfer set again."
                : $"{path} is a format {format} teacher cache; this library reads format {Format}.");
        }
        if (got < Size) throw new InvalidDataException($"{path} is {fileLength} bytes, shorter than a teacher-cache header ({Size}).");
        var content = (TeacherCacheContent)BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(44));
        var header = new TeacherCacheHeader(
            BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(8)), BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(16)), BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(24)),
            BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(32)), BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(36)), BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(40)),
            BinaryPrimitives.ReadDoubleLittleEndian(b.AsSpan(48)), content)
        {
            ShardIndex = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(56)),
            ShardCount = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(60)),
            SetStart = BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(64)),
            SetExamples = BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(72)),
            Identity = b.AsSpan(IdentityOffset, 32).ToArray(),
        };
        header.RequirePossible(path);
        Int128 expected = Size + (Int128)header.Examples * header.ExactBytesPerExample;
        if (fileLength != expected)
        {
            throw new InvalidDataException($"{path} is {fileLength} bytes but its header describes {expected} ({header.Examples} examples); the file is truncated or damaged.");
        }
        byte[] bodyHash = SHA256.HashData(stream); // the body follows the header: the stream stands there now
        if (!Checksum(b, bodyHash).AsSpan().SequenceEqual(b.AsSpan(ChecksumOffset, 32)))
        {
            throw new InvalidDataException($"{path} is damaged: its content does not match the checksum in its header.");
        }
        return header;
    }

    private void RequirePossible(string path)
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new InvalidDataException($"{path} is not a possible teacher cache: {what}.");
        }
        Require(Enum.IsDefined(Content), $"the content {(int)Content} is unknown");
        Require(Examples >= 0, $"it declares {Examples} examples");
        Require(ShardCount >= 1 && ShardIndex >= 0 && ShardIndex < ShardCount, $"it declares shard {ShardIndex} of {ShardCount}");
        Require(SetExamples >= 0, $"it declares a set of {SetExamples} examples");
        (long start, long length) = new TeacherCacheShard(ShardIndex, ShardCount).RangeOf(SetExamples);
        Require(SetStart == start && Examples == length,
            $"as shard {ShardIndex} of {ShardCount} of {SetExamples} examples it must hold examples {start} to {start + length}, but it declares {Examples} from {SetStart}");
        if (!HasLayout)
        {
            Require(Examples == 0 && Classes == 0 && Rank == 0, $"it declares {RowsPerExample} rows per example");
            return;
        }
        Require(Rank is 2 or 3, $"the logits' rank is {Rank}; it must be 2 ([N, C]) or 3 ([B, S, V])");
        Require(Rank == 3 || RowsPerExample == 1, $"[N, C] logits have one row per example, not {RowsPerExample}");
        Require(Classes >= 1 && Classes <= int.MaxValue, $"it declares {Classes} classes");
        if (Content == TeacherCacheContent.TopKProbabilities)
        {
            Require(K >= 1 && K <= Classes, $"k is {K}; it must lie in [1, {Classes}]");
            Require(IndexBytes == IndexBytesFor(Classes), $"class indices take {IndexBytes} bytes; {Classes} classes take {IndexBytesFor(Classes)}");
            Require(double.IsFinite(Temperature) && Temperature > 0, $"the temperature is {Temperature}");
        }
        else
        {
            Require(K == Classes && IndexBytes == 0 && Temperature == 1.0, "a values cache stores every output and no indices");
        }
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
