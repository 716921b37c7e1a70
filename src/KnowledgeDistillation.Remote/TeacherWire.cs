using System.Buffers.Binary;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Remote;

/// <summary>
/// The binary messages between <see cref="RemoteTeacher{TInput}"/> and a teacher server, little-endian throughout.
/// <para>
/// A request (<see cref="RequestContentType"/>): <c>"KDRQ"</c>, version (u16 = 1), flags (u16: 1 = attention mask,
/// 2 = token type ids), batch B (i32), length S (i32), B·S token ids (i32), then B·S mask bytes (0 or 1) when flagged,
/// then B·S token type ids (i32) when flagged. It is the <see cref="TokenBatch"/> the teacher would run in-process.
/// </para>
/// <para>
/// A response (<see cref="ResponseContentType"/>): <c>"KDRS"</c>, version (u16 = 1), content (u8: the
/// <see cref="TeacherCacheContent"/>), rank (u8: 3 for <c>[B, S, ·]</c> outputs, 2 for <c>[B, ·]</c>), B (i32), rows per
/// sequence (i32; 1 for rank 2), classes C (i64), then for top-k content k (i32), index bytes (u8: 2 below 65,537
/// classes, else 4), temperature (f64), every row's k + 1 probabilities (f16: the top k, then the tail) and every row's k
/// class ids (u16 or i32) — the rows a teacher cache holds; for values content, every row's C values (f16 or f32).
/// </para>
/// </summary>
public static class TeacherWire
{
    /// <summary>The content type of a request body.</summary>
    public const string RequestContentType = "application/vnd.kd.teacher-request";

    /// <summary>The content type of a response body.</summary>
    public const string ResponseContentType = "application/vnd.kd.teacher-response";

    /// <summary>The response header that carries the serving teacher's fingerprint (<see cref="TeacherDescription.Fingerprint"/>).</summary>
    public const string FingerprintHeader = "KD-Teacher-Fingerprint";

    private const ushort Version = 1;
    private const ushort MaskFlag = 1, TokenTypeFlag = 2;
    private const int RequestHeaderBytes = 16, ResponseHeaderBytes = 24, TopKHeaderBytes = 13;

    /// <summary>Encodes <paramref name="batch"/>'s ids, mask and token types (int64 or int32 ids; any mask dtype, nonzero = attend).</summary>
    /// <exception cref="ArgumentException">The ids are not <c>[B, S]</c> integers, an id is outside the int32 range, or the mask or token types are not shaped like the ids.</exception>
    public static byte[] EncodeRequest(TokenBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        Tensor ids = batch.InputIds;
        if (ids.dim() != 2 || !is_integral(ids.dtype) || ids.dtype == ScalarType.Bool)
        {
            throw new ArgumentException($"The batch's InputIds must be integer [B, S]; got {ids.dtype} [{string.Join(", ", ids.shape)}].", nameof(batch));
        }
        RequireSameShape(batch.AttentionMask, ids, "AttentionMask");
        RequireSameShape(batch.TokenTypeIds, ids, "TokenTypeIds");
        int b = checked((int)ids.shape[0]), s = checked((int)ids.shape[1]);
        long cells = (long)b * s;
        // Once per training step: the host copies below are temporaries, freed here rather than by the finalizer.
        using var scope = NewDisposeScope();
        long[] idValues = ids.to(ScalarType.Int64).cpu().data<long>().ToArray();
        ushort flags = (ushort)((batch.AttentionMask is null ? 0 : MaskFlag) | (batch.TokenTypeIds is null ? 0 : TokenTypeFlag));
        long size = RequestHeaderBytes + 4 * cells + (batch.AttentionMask is null ? 0 : cells) + (batch.TokenTypeIds is null ? 0 : 4 * cells);
        var body = new byte[size];
        Span<byte> span = body;
        "KDRQ"u8.CopyTo(span);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], flags);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], b);
        BinaryPrimitives.WriteInt32LittleEndian(span[12..], s);
        int at = RequestHeaderBytes;
        foreach (long id in idValues)
        {
            if (id is < int.MinValue or > int.MaxValue) throw new ArgumentException($"Token id {id} does not fit the wire's int32.", nameof(batch));
            BinaryPrimitives.WriteInt32LittleEndian(span[at..], (int)id);
            at += 4;
        }
        if (batch.AttentionMask is { } mask)
        {
            foreach (bool attend in mask.ne(0).cpu().data<bool>()) span[at++] = attend ? (byte)1 : (byte)0;
        }
        if (batch.TokenTypeIds is { } types)
        {
            foreach (long t in types.to(ScalarType.Int64).cpu().data<long>())
            {
                BinaryPrimitives.WriteInt32LittleEndian(span[at..], checked((int)t));
                at += 4;
            }
        }
        return body;
    }

    private static void RequireSameShape(Tensor? tensor, Tensor ids, string name)
    {
        if (tensor is not null && !tensor.shape.SequenceEqual(ids.shape))
        {
            throw new ArgumentException($"The batch's {name} must be shaped like its InputIds [{string.Join(", ", ids.shape)}]; got [{string.Join(", ", tensor.shape)}].", "batch");
        }
    }

    /// <summary>
    /// Decodes a request body into a CPU <see cref="TokenBatch"/> (int64 ids, int64 mask and token types), enforcing the limits.
    /// </summary>
    /// <exception cref="InvalidDataException">The body is not a request of this version, is cut short or too long, breaks a limit, or holds an id outside [0, <see cref="TeacherRequestLimits.VocabularySize"/>).</exception>
    public static TokenBatch DecodeRequest(ReadOnlySpan<byte> body, TeacherRequestLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        if (body.Length < RequestHeaderBytes || !body[..4].SequenceEqual("KDRQ"u8))
        {
            throw new InvalidDataException($"The body is not a teacher request: it must start with \"KDRQ\" and a {RequestHeaderBytes}-byte header; got {body.Length} bytes.");
        }
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(body[4..]), flags = BinaryPrimitives.ReadUInt16LittleEndian(body[6..]);
        if (version != Version) throw new InvalidDataException($"Request version {version}; this server reads version {Version}.");
        if ((flags & ~(MaskFlag | TokenTypeFlag)) != 0) throw new InvalidDataException($"Unknown request flags 0x{flags:X4}; known: 1 (attention mask), 2 (token type ids).");
        int b = BinaryPrimitives.ReadInt32LittleEndian(body[8..]), s = BinaryPrimitives.ReadInt32LittleEndian(body[12..]);
        if (b < 1 || b > limits.MaxSequences) throw new InvalidDataException($"The request holds {b} sequences; this server takes 1 … {limits.MaxSequences} per request.");
        if (s < 1 || s > limits.MaxLength) throw new InvalidDataException($"The request's sequences are {s} tokens long; this server takes 1 … {limits.MaxLength}.");
        bool hasMask = (flags & MaskFlag) != 0, hasTypes = (flags & TokenTypeFlag) != 0;
        long cells = (long)b * s;
        long expected = RequestHeaderBytes + 4 * cells + (hasMask ? cells : 0) + (hasTypes ? 4 * cells : 0);
        if (body.Length != expected)
        {
            throw new InvalidDataException($"A request of {b} × {s} tokens{(hasMask ? " with a mask" : "")}{(hasTypes ? " with token types" : "")} is {expected} bytes; the body has {body.Length}.");
        }
        var ids = new long[cells];
        int at = RequestHeaderBytes;
        for (long i = 0; i < cells; i++, at += 4)
        {
            int id = BinaryPrimitives.ReadInt32LittleEndian(body[at..]);
            if (id < 0 || id >= limits.VocabularySize)
            {
                throw new InvalidDataException($"Token id {id} at sequence {i / s}, position {i % s} is outside the teacher's vocabulary [0, {limits.VocabularySize}).");
            }
            ids[i] = id;
        }
        long[]? mask = null, types = null;
        if (hasMask)
        {
            mask = new long[cells];
            for (long i = 0; i < cells; i++, at++)
            {
                if (body[at] > 1) throw new InvalidDataException($"Mask byte {body[at]} at sequence {i / s}, position {i % s}; a mask holds 0 or 1.");
                mask[i] = body[at];
            }
        }
        if (hasTypes)
        {
            types = new long[cells];
            for (long i = 0; i < cells; i++, at += 4)
            {
                int t = BinaryPrimitives.ReadInt32LittleEndian(body[at..]);
                if (t < 0 || t >= limits.TokenTypes) throw new InvalidDataException($"Token type {t} at sequence {i / s}, position {i % s} is outside [0, {limits.TokenTypes}).");
                types[i] = t;
            }
        }
        return new TokenBatch(tensor(ids).reshape(b, s), mask is null ? null : tensor(mask).reshape(b, s), types is null ? null : tensor(types).reshape(b, s));
    }

    /// <summary>Encodes top-k targets <c>[B, S, k + 1]</c> / <c>[B, S, k]</c> (or <c>[B, k + 1]</c> / <c>[B, k]</c>) as a response; probabilities go as float16, as a cache stores them.</summary>
    /// <exception cref="ArgumentException">The targets are not rank 2 or 3, or <paramref name="classes"/> is below k.</exception>
    public static byte[] EncodeTopK(TopKTargets targets, long classes)
    {
        ArgumentNullException.ThrowIfNull(targets);
        int rank = (int)targets.Indices.dim();
        if (rank is not (2 or 3)) throw new ArgumentException($"Top-k targets must be [B, S, k] or [B, k]; got [{string.Join(", ", targets.Indices.shape)}].", nameof(targets));
        if (classes < targets.K) throw new ArgumentOutOfRangeException(nameof(classes), classes, $"The class count must be at least k ({targets.K}).");
        int b = checked((int)targets.Indices.shape[0]), rows = rank == 3 ? checked((int)targets.Indices.shape[1]) : 1;
        int indexBytes = StoredClassIds.BytesFor(classes);
        using var scope = NewDisposeScope();
        byte[] values = targets.Probabilities.to(ScalarType.Float16).cpu().contiguous().bytes.ToArray();
        byte[] classIds = StoredClassIds.Encode(targets.Indices, indexBytes);
        var body = new byte[ResponseHeaderBytes + TopKHeaderBytes + values.Length + classIds.Length];
        Span<byte> span = body;
        WriteResponseHeader(span, TeacherCacheContent.TopKProbabilities, rank, b, rows, classes);
        BinaryPrimitives.WriteInt32LittleEndian(span[ResponseHeaderBytes..], targets.K);
        span[ResponseHeaderBytes + 4] = (byte)indexBytes;
        BinaryPrimitives.WriteDoubleLittleEndian(span[(ResponseHeaderBytes + 5)..], targets.Temperature);
        values.CopyTo(span[(ResponseHeaderBytes + TopKHeaderBytes)..]);
        classIds.CopyTo(span[(ResponseHeaderBytes + TopKHeaderBytes + values.Length)..]);
        return body;
    }

    /// <summary>Encodes a values output <c>[B, S, C]</c> or <c>[B, C]</c> (pooled features, or logits) as float16 or float32.</summary>
    /// <exception cref="ArgumentException">The values are not rank 2 or 3 floating point, or the content is not a values content.</exception>
    public static byte[] EncodeValues(Tensor values, TeacherCacheContent content)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (content is not (TeacherCacheContent.Float16Values or TeacherCacheContent.Float32Values))
        {
            throw new ArgumentException($"Values go as Float16Values or Float32Values; got {content}.", nameof(content));
        }
        int rank = (int)values.dim();
        if (rank is not (2 or 3) || !values.is_floating_point()) throw new ArgumentException($"Values must be floating-point [B, S, C] or [B, C]; got {values.dtype} [{string.Join(", ", values.shape)}].", nameof(values));
        int b = checked((int)values.shape[0]), rows = rank == 3 ? checked((int)values.shape[1]) : 1;
        using var scope = NewDisposeScope();
        byte[] data = values.detach().to(content == TeacherCacheContent.Float16Values ? ScalarType.Float16 : ScalarType.Float32).cpu().contiguous().bytes.ToArray();
        var body = new byte[ResponseHeaderBytes + data.Length];
        WriteResponseHeader(body, content, rank, b, rows, values.shape[^1]);
        data.CopyTo(body.AsSpan(ResponseHeaderBytes));
        return body;
    }

    private static void WriteResponseHeader(Span<byte> span, TeacherCacheContent content, int rank, int b, int rows, long classes)
    {
        "KDRS"u8.CopyTo(span);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], Version);
        span[6] = (byte)content;
        span[7] = (byte)rank;
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], b);
        BinaryPrimitives.WriteInt32LittleEndian(span[12..], rows);
        BinaryPrimitives.WriteInt64LittleEndian(span[16..], classes);
    }

    /// <summary>Decodes a response into the output a teacher gives: top-k targets (float32) or values (float32), on <paramref name="device"/>.</summary>
    /// <exception cref="InvalidDataException">The body is not a response of this version, or its length does not match its header.</exception>
    public static ModelOutput DecodeResponse(ReadOnlySpan<byte> body, Device? device = null)
    {
        if (body.Length < ResponseHeaderBytes || !body[..4].SequenceEqual("KDRS"u8))
        {
            throw new InvalidDataException($"The body is not a teacher response: it must start with \"KDRS\" and a {ResponseHeaderBytes}-byte header; got {body.Length} bytes.");
        }
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(body[4..]);
        if (version != Version) throw new InvalidDataException($"Response version {version}; this client reads version {Version}.");
        var content = (TeacherCacheContent)body[6];
        int rank = body[7], b = BinaryPrimitives.ReadInt32LittleEndian(body[8..]), rows = BinaryPrimitives.ReadInt32LittleEndian(body[12..]);
        long classes = BinaryPrimitives.ReadInt64LittleEndian(body[16..]);
        if (rank is not (2 or 3) || b < 1 || rows < 1 || classes < 1 || (rank == 2 && rows != 1))
        {
            throw new InvalidDataException($"The response's header is not a valid shape: rank {rank}, batch {b}, rows {rows}, classes {classes}.");
        }
        long[] leading = rank == 3 ? [b, rows] : [b];
        long cells = (long)b * rows;
        Device target = device ?? CPU;
        using var scope = NewDisposeScope();
        switch (content)
        {
            case TeacherCacheContent.TopKProbabilities:
            {
                if (body.Length < ResponseHeaderBytes + TopKHeaderBytes) throw new InvalidDataException("The top-k response is cut short in its header.");
                int k = BinaryPrimitives.ReadInt32LittleEndian(body[ResponseHeaderBytes..]);
                int indexBytes = body[ResponseHeaderBytes + 4];
                double temperature = BinaryPrimitives.ReadDoubleLittleEndian(body[(ResponseHeaderBytes + 5)..]);
                if (k < 1 || k > classes || indexBytes is not (2 or 4)) throw new InvalidDataException($"The top-k response has k = {k} of {classes} classes and {indexBytes}-byte ids.");
                long valueBytes = cells * (k + 1) * 2, idBytes = cells * k * indexBytes;
                long expected = ResponseHeaderBytes + TopKHeaderBytes + valueBytes + idBytes;
                if (body.Length != expected) throw new InvalidDataException($"A top-k response of {cells} rows and k = {k} is {expected} bytes; the body has {body.Length}.");
                Tensor probabilities = empty([.. leading, k + 1], ScalarType.Float16);
                probabilities.bytes = body.Slice(ResponseHeaderBytes + TopKHeaderBytes, (int)valueBytes).ToArray();
                Tensor classIds = StoredClassIds.Decode(body.Slice((int)(ResponseHeaderBytes + TopKHeaderBytes + valueBytes), (int)idBytes).ToArray(), [.. leading, k], indexBytes);
                return new ModelOutput(new TopKTargets(probabilities.to(ScalarType.Float32).to(target).MoveToOuterDisposeScope(), classIds.to(target).MoveToOuterDisposeScope(), temperature));
            }
            case TeacherCacheContent.Float16Values or TeacherCacheContent.Float32Values:
            {
                int width = content == TeacherCacheContent.Float16Values ? 2 : 4;
                long expected = ResponseHeaderBytes + cells * classes * width;
                if (body.Length != expected) throw new InvalidDataException($"A values response of {cells} rows of {classes} is {expected} bytes; the body has {body.Length}.");
                Tensor values = empty([.. leading, classes], width == 2 ? ScalarType.Float16 : ScalarType.Float32);
                values.bytes = body[ResponseHeaderBytes..].ToArray();
                return new ModelOutput(values.to(ScalarType.Float32).to(target).MoveToOuterDisposeScope());
            }
            default:
                throw new InvalidDataException($"Unknown response content {(int)content}.");
        }
    }
}

/// <summary>What a teacher server accepts in one request.</summary>
/// <param name="VocabularySize">Token ids must be in [0, VocabularySize).</param>
/// <param name="MaxSequences">Sequences per request.</param>
/// <param name="MaxLength">Tokens per sequence.</param>
/// <param name="TokenTypes">Token type ids must be in [0, TokenTypes).</param>
public sealed record TeacherRequestLimits(long VocabularySize, int MaxSequences, int MaxLength, int TokenTypes = 2);
