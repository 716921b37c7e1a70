using System.Security.Cryptography;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// Writes a teacher cache: append the teacher's logits batch by batch, in the order of the examples' indices, then
/// <see cref="Complete"/>. Each row keeps its k most probable classes at the given temperature and one tail
/// bucket with the rest of the mass, as float16 (see <see cref="TeacherCache"/>); a values cache
/// (<see cref="ForValues"/>) keeps the outputs themselves, for feature teachers whose output is an embedding. The
/// file appears under its name only when complete (written to <c>path.partial</c>, then renamed); a writer disposed
/// before completing deletes its partial file. The header carries a checksum of the whole file, and for a shard
/// (<see cref="ForShard"/>) which shard of which set it is, so a damaged file or an incomplete, repeated, reordered or
/// mixed set of shards is refused when opened.
/// </summary>
public sealed class TeacherCacheWriter : IDisposable
{
    private readonly string _path, _partial;
    private readonly int _k;
    private readonly double _temperature;
    private readonly TeacherCacheContent _content;
    private readonly IncrementalHash _bodyHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private FileStream? _file;
    private TeacherCacheHeader? _shape;
    private long _examples;
    private TeacherCacheShard? _shard;
    private long _setExamples;
    private byte[] _identity = TeacherCacheHeader.IdentityOf(null);
    private string? _closed; // why no more batches are accepted: completed or disposed

    /// <summary>Starts a cache file.</summary>
    /// <param name="path">Where the finished cache goes; an existing file there is replaced only on <see cref="Complete"/>.</param>
    /// <param name="topK">k: classes kept per row, at least 1 (and at most the class count, checked on the first batch).</param>
    /// <param name="temperature">T of the stored probabilities softmax(z / T); the objective's soft-target temperature must match it.</param>
    public TeacherCacheWriter(string path, int topK, double temperature)
        : this(path, TeacherCacheContent.TopKProbabilities, topK, temperature)
    {
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), topK, $"topK must be at least 1; got {topK}.");
        Temperatures.Require(temperature, nameof(temperature));
    }

    private TeacherCacheWriter(string path, TeacherCacheContent content, int topK, double temperature)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        _path = Path.GetFullPath(path);
        _partial = _path + ".partial";
        _content = content;
        _k = topK;
        _temperature = temperature;
    }

    /// <summary>
    /// Starts a values cache: each appended row is stored as it is (no softmax, no top-k), in float16 or float32.
    /// This is the cache of a feature teacher, whose output is an embedding rather than class logits; a
    /// <see cref="CachedTeacher{TInput}"/> over it serves the stored rows as the teacher's logits.
    /// </summary>
    /// <param name="path">Where the finished cache goes.</param>
    /// <param name="precision">Float16 (half the bytes, about 3 significant digits) or Float32 (exact).</param>
    public static TeacherCacheWriter ForValues(string path, ScalarType precision = ScalarType.Float16) => precision switch
    {
        ScalarType.Float16 => new TeacherCacheWriter(path, TeacherCacheContent.Float16Values, 0, 1.0),
        ScalarType.Float32 => new TeacherCacheWriter(path, TeacherCacheContent.Float32Values, 0, 1.0),
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, $"precision must be Float16 or Float32; got {precision}."),
    };

    /// <summary>
    /// Makes this file shard <paramref name="shard"/> of a set of <paramref name="setExamples"/> examples: it must
    /// receive exactly the examples <see cref="TeacherCacheShard.RangeOf"/> gives (none, when there are more shards than
    /// examples: <see cref="Complete"/> then writes an empty shard). The header records the shard and the set, so
    /// <see cref="TeacherCache.Open"/> and <see cref="TeacherCache.Merge"/> accept exactly the complete set in order.
    /// Call before the first <see cref="Append(Tensor)"/>.
    /// </summary>
    /// <returns>This writer.</returns>
    public TeacherCacheWriter ForShard(TeacherCacheShard shard, long setExamples)
    {
        RequireNotStarted(nameof(ForShard));
        ArgumentOutOfRangeException.ThrowIfNegative(setExamples);
        shard.RangeOf(setExamples); // refuses default(TeacherCacheShard)
        _shard = shard;
        _setExamples = setExamples;
        return this;
    }

    /// <summary>
    /// Records what produced the outputs — the teacher and its version, the transfer set — as the SHA-256 of
    /// <paramref name="identity"/>. Shards (and the caches a run expects) with different identities are refused
    /// together, so a restart with a changed teacher cannot mix its outputs with the old teacher's. Call before the
    /// first <see cref="Append(Tensor)"/>.
    /// </summary>
    /// <returns>This writer.</returns>
    public TeacherCacheWriter WithIdentity(string identity)
    {
        RequireNotStarted(nameof(WithIdentity));
        ArgumentException.ThrowIfNullOrEmpty(identity);
        _identity = TeacherCacheHeader.IdentityOf(identity);
        return this;
    }

    /// <summary>Examples appended so far.</summary>
    public long Examples => _examples;

    /// <summary>Appends the teacher's logits for the next examples: <c>[N, C]</c> (one row per example) or <c>[B, S, V]</c> (S rows per example).</summary>
    /// <exception cref="ArgumentException">The logits are not floating point, their rank or trailing shape differs from the first batch's, or k exceeds the class count.</exception>
    public void Append(Tensor teacherLogits)
    {
        ArgumentNullException.ThrowIfNull(teacherLogits);
        if (_closed is not null) throw new ObjectDisposedException(nameof(TeacherCacheWriter), _closed);
        if (!teacherLogits.is_floating_point() || teacherLogits.dim() is not (2 or 3) || teacherLogits.shape[^1] < 1 || (teacherLogits.dim() == 3 && teacherLogits.shape[1] < 1))
        {
            throw new ArgumentException($"teacherLogits must be floating-point [N, C] or [B, S, V] with C, S, V ≥ 1; got {teacherLogits.dtype} {Shapes.Describe(teacherLogits.shape)}.", nameof(teacherLogits));
        }
        int rank = (int)teacherLogits.dim();
        long rows = rank == 3 ? teacherLogits.shape[1] : 1, classes = teacherLogits.shape[^1];
        RequireShape(rank, rows, classes, nameof(teacherLogits), "teacherLogits", "the logits", Shapes.Describe(teacherLogits.shape));

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long examples = teacherLogits.shape[0];
        if (_content != TeacherCacheContent.TopKProbabilities)
        {
            ScalarType stored = _content == TeacherCacheContent.Float32Values ? ScalarType.Float32 : ScalarType.Float16;
            Write(teacherLogits.detach().to(stored).cpu().contiguous().bytes);
            _examples += examples;
            return;
        }
        using TopKTargets targets = TopKTargets.FromLogits(teacherLogits.reshape(examples, rows, classes), _k, _temperature);
        WriteTopK(targets, examples);
    }

    /// <summary>
    /// Appends top-k targets computed elsewhere — a teacher server's answer, another cache's rows — for the next
    /// examples: <c>[N, k + 1]</c> / <c>[N, k]</c> or <c>[B, S, k + 1]</c> / <c>[B, S, k]</c>, at this cache's k and
    /// temperature, over <paramref name="classes"/> classes. Stored as float16, as <see cref="Append(Tensor)"/> stores its rows.
    /// </summary>
    /// <exception cref="InvalidOperationException">This is a values cache.</exception>
    /// <exception cref="ArgumentException">The targets' k or temperature differ from the cache's, or their rank, rows or class count differ from the first batch's.</exception>
    public void Append(TopKTargets targets, long classes)
    {
        ArgumentNullException.ThrowIfNull(targets);
        if (_closed is not null) throw new ObjectDisposedException(nameof(TeacherCacheWriter), _closed);
        if (_content != TeacherCacheContent.TopKProbabilities) throw new InvalidOperationException($"This is a values cache ({_content}); top-k targets go into a top-k cache.");
        if (targets.K != _k || targets.Temperature != _temperature)
        {
            throw new ArgumentException($"The targets hold top-{targets.K} at T = {targets.Temperature:R}; this cache stores top-{_k} at T = {_temperature:R}.", nameof(targets));
        }
        int rank = (int)targets.Indices.dim();
        if (rank is not (2 or 3)) throw new ArgumentException($"Targets must be [N, k] or [B, S, k]; got indices {Shapes.Describe(targets.Indices.shape)}.", nameof(targets));
        long targetRows = rank == 3 ? targets.Indices.shape[1] : 1;
        RequireShape(rank, targetRows, classes, nameof(targets), "The targets", "the targets", rank == 3 ? $"[B, {targetRows}, {classes}]" : $"[N, {classes}]");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        WriteTopK(targets, targets.Indices.shape[0]);
    }

    /// <summary>Fixes the cache's shape on the first batch (and opens the file); later batches must match it.</summary>
    private void RequireShape(int rank, long rows, long classes, string parameter, string subject, string described, string actual)
    {
        if (_shape is null)
        {
            if (_content != TeacherCacheContent.TopKProbabilities) _shape = TeacherCacheHeader.ForValues(rows, classes, rank, _content);
            else if (_k > classes) throw new ArgumentException($"topK ({_k}) must not exceed the class count; {described} have {classes} classes.", parameter);
            else _shape = new TeacherCacheHeader(0, rows, classes, _k, TeacherCacheHeader.IndexBytesFor(classes), rank, _temperature);
            Open();
        }
        else if (rank != _shape.Rank || rows != _shape.RowsPerExample || classes != _shape.Classes)
        {
            string expected = _shape.Rank == 3 ? $"[B, {_shape.RowsPerExample}, {_shape.Classes}]" : $"[N, {_shape.Classes}]";
            throw new ArgumentException($"{subject} must be {expected} like the first batch; got {actual}.", parameter);
        }
    }

    private void WriteTopK(TopKTargets targets, long examples)
    {
        byte[] values = targets.Probabilities.to(ScalarType.Float16).cpu().contiguous().bytes.ToArray();
        byte[] classIds = StoredClassIds.Encode(targets.Indices, _shape!.IndexBytes);

        long valueBlock = _shape.ValueBytesPerExample, indexBlock = _shape.IndexBytesPerExample;
        for (long e = 0; e < examples; e++)
        {
            Write(values.AsSpan((int)(e * valueBlock), (int)valueBlock));
            Write(classIds.AsSpan((int)(e * indexBlock), (int)indexBlock));
        }
        _examples += examples;
    }

    /// <summary>Writes the header (example count, shard, checksum), closes the file and moves it to its final name.</summary>
    /// <returns>The cache's path.</returns>
    /// <exception cref="InvalidOperationException">Nothing was appended (to a file that is not an empty shard), or a shard received other than its range's example count.</exception>
    public string Complete()
    {
        if (_closed is not null) throw new ObjectDisposedException(nameof(TeacherCacheWriter), _closed);
        TeacherCacheShard shard = _shard ?? new TeacherCacheShard(0, 1);
        long setExamples = _shard is null ? _examples : _setExamples;
        (long start, long length) = shard.RangeOf(setExamples);
        if (_examples != length)
        {
            throw new InvalidOperationException($"Shard {shard} of {setExamples} examples must hold {length} (examples {start} to {start + length}); {_examples} were appended.");
        }
        if (_shape is null)
        {
            if (_shard is null) throw new InvalidOperationException("Append at least one batch before completing the cache.");
            // An empty shard (more shards than examples): nothing was appended to learn the layout from.
            _shape = new TeacherCacheHeader(0, 0, 0, _content == TeacherCacheContent.TopKProbabilities ? _k : 0, 0, 0,
                _content == TeacherCacheContent.TopKProbabilities ? _temperature : 1.0, _content);
            Open();
        }
        TeacherCacheHeader header = _shape with
        {
            Examples = _examples, ShardIndex = shard.Index, ShardCount = shard.Count, SetStart = start, SetExamples = setExamples, Identity = _identity,
        };
        _file!.Position = 0;
        _file.Write(header.ToBytes(_bodyHash.GetHashAndReset()));
        _file.Flush(flushToDisk: true);
        _file.Dispose();
        _file = null;
        File.Move(_partial, _path, overwrite: true);
        _closed = $"The cache {_path} is already complete.";
        return _path;
    }

    /// <summary>Closes the writer; an incomplete cache's partial file is deleted.</summary>
    public void Dispose()
    {
        _closed ??= "The writer was disposed before the cache was complete.";
        _bodyHash.Dispose();
        if (_file is null) return;
        _file.Dispose();
        _file = null;
        File.Delete(_partial);
    }

    private void Open()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        _file = new FileStream(_partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        _file.Write(new byte[TeacherCacheHeader.Size]); // rewritten by Complete
    }

    private void Write(ReadOnlySpan<byte> bytes)
    {
        _file!.Write(bytes);
        _bodyHash.AppendData(bytes);
    }

    private void RequireNotStarted(string method)
    {
        if (_closed is not null) throw new ObjectDisposedException(nameof(TeacherCacheWriter), _closed);
        if (_shape is not null) throw new InvalidOperationException($"Call {method} before the first Append.");
    }
}
