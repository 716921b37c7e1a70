using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// A teacher that writes what another top-k teacher gives (a remote teacher, a cache of another set) into a teacher
/// cache during the first pass over a fixed set of examples, and reads that cache from the moment the set is complete:
/// the second epoch runs without the teacher. The first pass must visit the examples in order (0, 1, 2, …, as a
/// cache is written); a cache already complete at the given path is read from the start, so a later run
/// does not ask the teacher at all. The targets of both passes are the same float16 rows.
/// </summary>
/// <typeparam name="TInput">The batch type.</typeparam>
public sealed class RecordingTeacher<TInput> : IDistillationModel<TInput>, ITopKTeacher, IDevicePlacement, IDisposable
{
    private readonly IDistillationModel<TInput> _teacher;
    private readonly string _path;
    private readonly long _examples, _classes;
    private readonly Func<TInput, Tensor> _exampleIndices;
    private TeacherCacheWriter? _writer;
    private TeacherCache? _cache;
    private CachedTeacher<TInput>? _cached;
    private Device _device = CPU;

    /// <summary>Creates the teacher; a complete cache at <paramref name="cachePath"/> of <paramref name="examples"/> examples is opened now.</summary>
    /// <param name="teacher">The teacher to record: its outputs are top-k targets (<see cref="ModelOutputKinds.TopKTargets"/>).</param>
    /// <param name="cachePath">Where the cache goes.</param>
    /// <param name="examples">Examples in the set; the cache is complete when all are written.</param>
    /// <param name="classes">The teacher's class count (a remote teacher's <c>Description.Classes</c>).</param>
    /// <param name="exampleIndices">The examples of a batch, as a <see cref="CachedTeacher{TInput}"/> reads them.</param>
    /// <exception cref="ArgumentException">The teacher does not give top-k targets, or a count is below 1.</exception>
    /// <exception cref="InvalidDataException">The cache at <paramref name="cachePath"/> holds another number of examples.</exception>
    public RecordingTeacher(IDistillationModel<TInput> teacher, string cachePath, long examples, long classes, Func<TInput, Tensor> exampleIndices)
    {
        _teacher = teacher ?? throw new ArgumentNullException(nameof(teacher));
        ArgumentException.ThrowIfNullOrWhiteSpace(cachePath);
        if (teacher is not ITopKTeacher || !teacher.Provides.HasFlag(ModelOutputKinds.TopKTargets))
        {
            throw new ArgumentException($"The teacher ({teacher.GetType().Name}) must give top-k targets (a remote teacher, or a cached one); it provides {teacher.Provides}.", nameof(teacher));
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(examples, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 1);
        _path = Path.GetFullPath(cachePath);
        _examples = examples;
        _classes = classes;
        _exampleIndices = exampleIndices ?? throw new ArgumentNullException(nameof(exampleIndices));
        if (File.Exists(_path)) OpenCache();
    }

    /// <summary>Whether the cache is complete and read instead of the teacher.</summary>
    public bool IsComplete => _cached is not null;

    /// <summary>Examples written so far (all of them once complete).</summary>
    public long Recorded { get; private set; }

    /// <summary>Top-k targets.</summary>
    public ModelOutputKinds Provides => ModelOutputKinds.TopKTargets;

    /// <summary>The recorded teacher's temperature (the cache's).</summary>
    public double TopKTemperature => ((ITopKTeacher)_teacher).TopKTemperature;

    /// <inheritdoc />
    public void PlaceOn(Device device)
    {
        _device = device ?? throw new ArgumentNullException(nameof(device));
        (_teacher as IDevicePlacement)?.PlaceOn(device);
        _cached?.PlaceOn(device);
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">In the first pass, the batch's examples are not the next ones in order.</exception>
    public ModelOutput Run(TInput input, OutputRequest request)
    {
        if (_cached is not null) return _cached.Run(input, request);
        long[] indices;
        using (NewDisposeScope()) indices = _exampleIndices(input).to(ScalarType.Int64).cpu().data<long>().ToArray();
        for (int i = 0; i < indices.Length; i++)
        {
            if (indices[i] != Recorded + i)
            {
                throw new InvalidOperationException(
                    $"Recording a teacher cache needs the first pass over the examples in order: example {Recorded + i} was next, the batch gives {indices[i]} at position {i}. " +
                    "Give the first epoch unshuffled, or label the set first with TeacherCacheWriter.");
            }
        }
        ModelOutput output = _teacher.Run(input, request);
        TopKTargets targets = output.TopK ?? throw new InvalidOperationException($"The recorded teacher ({_teacher.GetType().Name}) returned no top-k targets.");
        _writer ??= new TeacherCacheWriter(_path, targets.K, targets.Temperature);
        _writer.Append(targets, _classes);
        Recorded += indices.Length;
        if (Recorded == _examples)
        {
            _writer.Complete();
            _writer.Dispose();
            _writer = null;
            OpenCache();
        }
        return output;
    }

    private void OpenCache()
    {
        _cache = TeacherCache.Open(_path);
        if (_cache.Examples != _examples)
        {
            long found = _cache.Examples;
            _cache.Dispose();
            _cache = null;
            throw new InvalidDataException($"The cache at {_path} holds {found} examples; this set has {_examples}. Remove it to record again.");
        }
        _cached = new CachedTeacher<TInput>(_cache, _exampleIndices);
        _cached.PlaceOn(_device);
        Recorded = _examples;
    }

    /// <summary>Closes the cache; an incomplete one is deleted (its partial file).</summary>
    public void Dispose()
    {
        _writer?.Dispose();
        _cache?.Dispose();
    }
}
