using System.IO.MemoryMappedFiles;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// A teacher's outputs computed once and stored on disk (<see cref="TeacherCacheWriter"/>), memory-mapped and read
/// back by example index, so later epochs train the student without running the teacher. Each row holds the
/// teacher's k most probable classes at the cache's temperature plus a tail bucket with the remaining mass, as
/// float16: 4k + 2 bytes per row for vocabularies up to 65,536 classes, instead of 4·C for float32 logits. A values
/// cache (<see cref="Content"/>) holds the outputs themselves instead, for teachers whose output is an embedding.
/// Several shard files (written independently, e.g. by different machines) open as one cache whose example
/// indices run through the shards in the order given. Thread-safe for concurrent reads.
/// </summary>
public sealed class TeacherCache : IDisposable
{
    private readonly Shard[] _shards;
    private readonly TeacherCacheHeader _shape;

    private TeacherCache(Shard[] shards)
    {
        _shards = shards;
        _shape = shards[0].Header;
        Examples = shards.Sum(s => s.Header.Examples);
    }

    /// <summary>Opens one cache file, or several shards as one cache.</summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is not a complete cache, or shards disagree on k, temperature, rows per example or class count.</exception>
    public static TeacherCache Open(params string[] paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        if (paths.Length == 0) throw new ArgumentException("Give at least one cache file.", nameof(paths));
        var shards = new List<Shard>();
        try
        {
            long start = 0;
            foreach (string path in paths)
            {
                Shard shard = Shard.Open(path, start);
                shards.Add(shard);
                TeacherCacheHeader first = shards[0].Header, h = shard.Header;
                if (h with { Examples = 0 } != first with { Examples = 0 })
                {
                    throw new InvalidDataException(
                        $"Shard {path} ({h.Content}, k {h.K}, T {h.Temperature}, {h.RowsPerExample} rows of {h.Classes} classes) does not match {paths[0]} " +
                        $"({first.Content}, k {first.K}, T {first.Temperature}, {first.RowsPerExample} rows of {first.Classes} classes).");
                }
                start += h.Examples;
            }
            return new TeacherCache([.. shards]);
        }
        catch
        {
            shards.ForEach(s => s.Dispose());
            throw;
        }
    }

    /// <summary>Examples in the cache (all shards).</summary>
    public long Examples { get; }

    /// <summary>Rows per example: the sequence length for <c>[B, S, V]</c> logits, 1 for <c>[N, C]</c>.</summary>
    public long RowsPerExample => _shape.RowsPerExample;

    /// <summary>The teacher's class (vocabulary) count.</summary>
    public long Classes => _shape.Classes;

    /// <summary>k, the classes kept per row.</summary>
    public int K => _shape.K;

    /// <summary>The temperature of the stored probabilities.</summary>
    public double Temperature => _shape.Temperature;

    /// <summary>What the cache stores: top-k probabilities, or the outputs themselves (a values cache).</summary>
    public TeacherCacheContent Content => _shape.Content;

    /// <summary>Bytes stored per row (token), to compare with 4·C for float32 logits.</summary>
    public long BytesPerRow => _shape.BytesPerExample / _shape.RowsPerExample;

    /// <summary>
    /// The targets of the given examples: <c>[n, S, k + 1]</c> probabilities and <c>[n, S, k]</c> indices for sequence
    /// caches, <c>[n, k + 1]</c> and <c>[n, k]</c> for classification caches, on <paramref name="device"/> (default CPU).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An index is outside [0, <see cref="Examples"/>).</exception>
    /// <exception cref="InvalidOperationException">The cache is a values cache; read it with <see cref="ReadValues"/>.</exception>
    public TopKTargets Read(Tensor exampleIndices, Device? device = null)
    {
        if (Content != TeacherCacheContent.TopKProbabilities)
        {
            throw new InvalidOperationException($"This cache stores the teacher's outputs themselves ({Content}), not top-k probabilities; read it with ReadValues.");
        }
        using var scope = NewDisposeScope();
        (long[] indices, byte[] values, byte[] classIds) = ReadBlocks(exampleIndices);
        long[] leading = _shape.Rank == 3 ? [indices.Length, _shape.RowsPerExample] : [indices.Length];
        Tensor probabilities = empty([.. leading, _shape.K + 1], ScalarType.Float16);
        probabilities.bytes = values;
        Tensor ids = empty([.. leading, _shape.K], _shape.IndexBytes == 2 ? ScalarType.Int16 : ScalarType.Int32);
        ids.bytes = classIds;
        Tensor classes = _shape.IndexBytes == 2 ? ids.to(ScalarType.Int64).bitwise_and(0xFFFF) : ids.to(ScalarType.Int64);
        Device target = device ?? CPU;
        return new TopKTargets(
            probabilities.to(ScalarType.Float32).to(target).MoveToOuterDisposeScope(), classes.to(target).MoveToOuterDisposeScope(), _shape.Temperature);
    }

    /// <summary>
    /// The stored outputs of the given examples from a values cache (<see cref="TeacherCacheWriter.ForValues"/>), as
    /// float32: <c>[n, C]</c>, or <c>[n, S, C]</c> for a sequence cache, on <paramref name="device"/> (default CPU).
    /// </summary>
    /// <exception cref="InvalidOperationException">The cache holds top-k probabilities; read it with <see cref="Read"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An index is outside [0, <see cref="Examples"/>).</exception>
    public Tensor ReadValues(Tensor exampleIndices, Device? device = null)
    {
        if (Content == TeacherCacheContent.TopKProbabilities)
        {
            throw new InvalidOperationException("This cache stores top-k probabilities, not the teacher's outputs; read it with Read.");
        }
        using var scope = NewDisposeScope();
        (long[] indices, byte[] values, _) = ReadBlocks(exampleIndices);
        long[] leading = _shape.Rank == 3 ? [indices.Length, _shape.RowsPerExample] : [indices.Length];
        Tensor stored = empty([.. leading, _shape.Classes], Content == TeacherCacheContent.Float32Values ? ScalarType.Float32 : ScalarType.Float16);
        stored.bytes = values;
        return stored.to(ScalarType.Float32).to(device ?? CPU).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Joins shard files (each a complete cache of a contiguous range, e.g. written by <see cref="TeacherCacheShard"/>
    /// processes) into one cache file at <paramref name="destination"/>, in the order given. The result is byte for
    /// byte the file one process would have written for the same outputs. The destination appears only when complete.
    /// </summary>
    /// <returns>The merged cache's path.</returns>
    /// <exception cref="FileNotFoundException">A shard is missing.</exception>
    /// <exception cref="InvalidDataException">A shard is incomplete or damaged, or the shards disagree on their layout.</exception>
    public static string Merge(string destination, IReadOnlyList<string> shards)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(destination);
        ArgumentNullException.ThrowIfNull(shards);
        if (shards.Count == 0) throw new ArgumentException("Give at least one shard file.", nameof(shards));
        TeacherCacheHeader merged;
        using (TeacherCache check = Open([.. shards])) merged = check._shape with { Examples = check.Examples };

        string target = Path.GetFullPath(destination), partial = target + ".partial";
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        try
        {
            using (var output = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                output.Write(merged.ToBytes());
                foreach (string shard in shards)
                {
                    using FileStream input = File.OpenRead(shard);
                    input.Position = TeacherCacheHeader.Size;
                    input.CopyTo(output);
                }
                output.Flush(flushToDisk: true);
            }
            File.Move(partial, target, overwrite: true);
        }
        finally
        {
            if (File.Exists(partial)) File.Delete(partial);
        }
        return target;
    }

    private (long[] Indices, byte[] Values, byte[] ClassIds) ReadBlocks(Tensor exampleIndices)
    {
        ArgumentNullException.ThrowIfNull(exampleIndices);
        if (!is_integral(exampleIndices.dtype) || exampleIndices.dtype == ScalarType.Bool || exampleIndices.dim() != 1)
        {
            throw new ArgumentException(
                $"exampleIndices must be a [n] integer tensor of example positions; got {exampleIndices.dtype} with shape {Shapes.Describe(exampleIndices.shape)}.", nameof(exampleIndices));
        }
        long[] indices = exampleIndices.to(ScalarType.Int64).cpu().data<long>().ToArray();
        long valueBlock = _shape.ValueBytesPerExample, indexBlock = _shape.IndexBytesPerExample;
        var values = new byte[indices.Length * valueBlock];
        var classIds = new byte[indices.Length * indexBlock];
        for (int i = 0; i < indices.Length; i++)
        {
            long example = indices[i];
            if (example < 0 || example >= Examples)
            {
                throw new ArgumentOutOfRangeException(nameof(exampleIndices), example, $"Example indices must lie in [0, {Examples}); got {example}.");
            }
            Shard shard = ShardOf(example);
            long offset = TeacherCacheHeader.Size + (example - shard.Start) * _shape.BytesPerExample;
            shard.View.ReadArray(offset, values, (int)(i * valueBlock), (int)valueBlock);
            if (indexBlock > 0) shard.View.ReadArray(offset + valueBlock, classIds, (int)(i * indexBlock), (int)indexBlock);
        }
        return (indices, values, classIds);
    }

    /// <summary>Unmaps every shard.</summary>
    public void Dispose()
    {
        foreach (Shard shard in _shards) shard.Dispose();
    }

    private Shard ShardOf(long example)
    {
        foreach (Shard shard in _shards)
        {
            if (example < shard.Start + shard.Header.Examples) return shard;
        }
        throw new InvalidOperationException("Unreachable: the index was checked against the example count.");
    }

    private sealed class Shard(MemoryMappedFile file, MemoryMappedViewAccessor view, TeacherCacheHeader header, long start) : IDisposable
    {
        public MemoryMappedViewAccessor View => view;

        public TeacherCacheHeader Header => header;

        public long Start => start;

        public static Shard Open(string path, long start)
        {
            if (!File.Exists(path)) throw new FileNotFoundException($"Teacher cache {path} does not exist.", path);
            long length = new FileInfo(path).Length;
            var headerBytes = new byte[TeacherCacheHeader.Size];
            using (FileStream stream = File.OpenRead(path)) stream.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false);
            TeacherCacheHeader header = TeacherCacheHeader.Parse(headerBytes, path, length);
            MemoryMappedFile file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            return new Shard(file, file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read), header, start);
        }

        public void Dispose()
        {
            view.Dispose();
            file.Dispose();
        }
    }
}
