using static TorchSharp.torch;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// Writes a teacher cache: append the teacher's logits batch by batch, in the order of the examples' indices, then
/// <see cref="Complete"/>. Each row keeps its k most probable classes at the given temperature and one tail
/// bucket with the rest of the mass, as float16 (see <see cref="TeacherCache"/>); a values cache
/// (<see cref="ForValues"/>) keeps the outputs themselves, for feature teachers whose output is an embedding. The
/// file appears under its name only when complete (written to <c>path.partial</c>, then renamed); a writer disposed
/// before completing deletes its partial file. Any process can write a shard: a cache is just the teacher's outputs
/// for a range of examples (see <see cref="TeacherCacheShard"/> and <see cref="TeacherCache.Merge"/>).
/// </summary>
public sealed class TeacherCacheWriter : IDisposable
{
    private readonly string _path, _partial;
    private readonly int _k;
    private readonly double _temperature;
    private readonly TeacherCacheContent _content;
    private FileStream? _file;
    private TeacherCacheHeader? _shape;
    private long _examples;
    private string? _closed; // why no more batches are accepted: completed or disposed

    /// <summary>Starts a cache file.</summary>
    /// <param name="path">Where the finished cache goes; an existing file there is replaced only on <see cref="Complete"/>.</param>
    /// <param name="topK">k: classes kept per row, at least 1 (and at most the class count, checked on the first batch).</param>
    /// <param name="temperature">T of the stored probabilities softmax(z / T); the objective's soft-target temperature must match it.</param>
    public TeacherCacheWriter(string path, int topK, double temperature)
        : this(path, TeacherCacheContent.TopKProbabilities, topK, temperature)
    {
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), topK, $"topK must be at least 1; got {topK}.");
        Losses.LossInputs.RequireTemperature(temperature, nameof(temperature));
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

    /// <summary>Examples appended so far.</summary>
    public long Examples => _examples;

    /// <summary>Appends the teacher's logits for the next examples: <c>[N, C]</c> (one row per example) or <c>[B, S, V]</c> (S rows per example).</summary>
    /// <exception cref="ArgumentException">The logits are not floating point, their rank or trailing shape differs from the first batch's, or k exceeds the class count.</exception>
    public void Append(Tensor teacherLogits)
    {
        ArgumentNullException.ThrowIfNull(teacherLogits);
        if (_closed is not null) throw new ObjectDisposedException(nameof(TeacherCacheWriter), _closed);
        if (!teacherLogits.is_floating_point() || teacherLogits.dim() is not (2 or 3))
        {
            throw new ArgumentException($"teacherLogits must be floating-point [N, C] or [B, S, V]; got {teacherLogits.dtype} {Shapes.Describe(teacherLogits.shape)}.", nameof(teacherLogits));
        }
        int rank = (int)teacherLogits.dim();
        long rows = rank == 3 ? teacherLogits.shape[1] : 1, classes = teacherLogits.shape[^1];
        if (_shape is null)
        {
            if (_content != TeacherCacheContent.TopKProbabilities) _shape = TeacherCacheHeader.ForValues(rows, classes, rank, _content);
            else if (_k > classes) throw new ArgumentException($"topK ({_k}) must not exceed the class count; the logits have {classes} classes.", nameof(teacherLogits));
            else _shape = new TeacherCacheHeader(0, rows, classes, _k, TeacherCacheHeader.IndexBytesFor(classes), rank, _temperature);
            Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
            _file = new FileStream(_partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
            _file.Write(_shape.ToBytes());
        }
        else if (rank != _shape.Rank || rows != _shape.RowsPerExample || classes != _shape.Classes)
        {
            string expected = _shape.Rank == 3 ? $"[B, {_shape.RowsPerExample}, {_shape.Classes}]" : $"[N, {_shape.Classes}]";
            throw new ArgumentException($"teacherLogits must be {expected} like the first batch; got {Shapes.Describe(teacherLogits.shape)}.", nameof(teacherLogits));
        }

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long examples = teacherLogits.shape[0];
        if (_content != TeacherCacheContent.TopKProbabilities)
        {
            ScalarType stored = _content == TeacherCacheContent.Float32Values ? ScalarType.Float32 : ScalarType.Float16;
            _file!.Write(teacherLogits.detach().to(stored).cpu().contiguous().bytes);
            _examples += examples;
            return;
        }
        Tensor probabilities = (teacherLogits.detach().to(ScalarType.Float32) / _temperature).softmax(-1).reshape(examples, rows, classes);
        (Tensor top, Tensor indices) = probabilities.topk(_k, dim: -1);
        // The mass of every other class; exactly 0 when every class is kept (rounding would otherwise leave ~1e-8 there).
        Tensor tail = _k == classes ? zeros_like(top.narrow(-1, 0, 1)) : (probabilities.sum(-1, keepdim: true) - top.sum(-1, keepdim: true)).clamp_min(0);
        byte[] values = cat([top, tail], -1).to(ScalarType.Float16).cpu().contiguous().bytes.ToArray();
        byte[] classIds = (_shape.IndexBytes == 2
            ? (indices - indices.ge(32768).to(ScalarType.Int64) * 65536).to(ScalarType.Int16) // uint16 stored in int16's bits
            : indices.to(ScalarType.Int32)).cpu().contiguous().bytes.ToArray();

        long valueBlock = _shape.ValueBytesPerExample, indexBlock = _shape.IndexBytesPerExample;
        for (long e = 0; e < examples; e++)
        {
            _file!.Write(values, (int)(e * valueBlock), (int)valueBlock);
            _file.Write(classIds, (int)(e * indexBlock), (int)indexBlock);
        }
        _examples += examples;
    }

    /// <summary>Writes the example count, closes the file and moves it to its final name.</summary>
    /// <returns>The cache's path.</returns>
    /// <exception cref="InvalidOperationException">Nothing was appended.</exception>
    public string Complete()
    {
        if (_closed is not null) throw new ObjectDisposedException(nameof(TeacherCacheWriter), _closed);
        if (_shape is null || _file is null) throw new InvalidOperationException("Append at least one batch before completing the cache.");
        _file.Position = 0;
        _file.Write((_shape with { Examples = _examples }).ToBytes());
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
        if (_file is null) return;
        _file.Dispose();
        _file = null;
        File.Delete(_partial);
    }
}
