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
/// The shards of one set (written independently by <see cref="TeacherCacheWriter.ForShard"/>, e.g. on different
/// machines) open as one cache. Every file's checksum is verified when it is opened (one read of the file).
/// Thread-safe for concurrent reads.
/// </summary>
public sealed class TeacherCache : IDisposable
{
    private readonly Shard[] _shards;
    private readonly TeacherCacheHeader _shape;

    private TeacherCache(Shard[] shards)
    {
        _shards = shards;
        _shape = shards.Select(s => s.Header).FirstOrDefault(h => h.HasLayout) ?? shards[0].Header;
        Examples = shards.Sum(s => s.Header.Examples);
    }

    /// <summary>Opens one cache file, or all the shards of one set, in order, as one cache.</summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">
    /// A file is not a complete, undamaged cache; or the files are not exactly shards 0 … N − 1 of one set, in order
    /// (a shard missing, repeated or out of place, shards of different sets or identities, a lone shard of several); or
    /// they disagree on content, k, temperature, rows per example or class count.
    /// </exception>
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
                start += shard.Header.Examples;
            }
            RequireOneSet(paths, shards.Select(s => s.Header).ToArray());
            return new TeacherCache([.. shards]);
        }
        catch
        {
            shards.ForEach(s => s.Dispose());
            throw;
        }
    }

    /// <summary>The files must be shards 0 … N − 1 of N, in order, of one set of examples, with one identity and one layout.</summary>
    private static void RequireOneSet(string[] paths, TeacherCacheHeader[] headers)
    {
        for (int i = 0; i < headers.Length; i++)
        {
            TeacherCacheHeader h = headers[i];
            if (h.ShardCount != headers.Length || h.ShardIndex != i)
            {
                string given = headers.Length == 1 ? "alone" : $"as file {i} of {headers.Length}";
                throw new InvalidDataException(
                    $"{paths[i]} is shard {h.ShardIndex} of {h.ShardCount}, given {given}: open all {h.ShardCount} shards of the set, in order " +
                    "(TeacherCacheShard.PathsFor), or the merged cache.");
            }
            if (h.SetExamples != headers[0].SetExamples || !h.Identity.AsSpan().SequenceEqual(headers[0].Identity))
            {
                throw new InvalidDataException(
                    $"{paths[i]} is a shard of {(h.SetExamples != headers[0].SetExamples ? $"a set of {h.SetExamples} examples" : "another identity")}, " +
                    $"{paths[0]} of {(h.SetExamples != headers[0].SetExamples ? $"a set of {headers[0].SetExamples}" : "another")}: the shards come from different labelling runs.");
            }
        }
        TeacherCacheHeader[] laid = headers.Where(h => h.HasLayout).ToArray();
        int first = Array.FindIndex(headers, h => h.HasLayout);
        for (int i = 0; i < headers.Length; i++)
        {
            TeacherCacheHeader h = headers[i];
            bool differs = h.HasLayout ? h.Layout != laid[0].Layout : h.Content != headers[0].Content || (h.Content == TeacherCacheContent.TopKProbabilities && (h.K != headers[0].K || h.Temperature != headers[0].Temperature));
            if (differs && first >= 0)
            {
                TeacherCacheHeader f = laid[0];
                throw new InvalidDataException(
                    $"Shard {paths[i]} ({h.Content}, k {h.K}, T {h.Temperature}, {h.RowsPerExample} rows of {h.Classes} classes) does not match {paths[first]} " +
                    $"({f.Content}, k {f.K}, T {f.Temperature}, {f.RowsPerExample} rows of {f.Classes} classes).");
            }
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
        Tensor classes = StoredClassIds.Decode(classIds, [.. leading, _shape.K], _shape.IndexBytes);
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
        using (TeacherCache check = Open([.. shards]))
        {
            merged = check._shape with
            {
                Examples = check.Examples, ShardIndex = 0, ShardCount = 1, SetStart = 0, SetExamples = check.Examples, Identity = check._shards[0].Header.Identity,
            };
        }

        string target = Path.GetFullPath(destination), partial = target + ".partial";
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        try
        {
            using (var output = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            using (var body = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256))
            {
                output.Write(new byte[TeacherCacheHeader.Size]);
                var buffer = new byte[1 << 20];
                foreach (string shard in shards)
                {
                    using FileStream input = File.OpenRead(shard);
                    input.Position = TeacherCacheHeader.Size;
                    int read;
                    while ((read = input.Read(buffer, 0, buffer.Length)) > 0)
                    {
                        output.Write(buffer, 0, read);
                        body.AppendData(buffer, 0, read);
                    }
                }
                output.Position = 0;
                output.Write(merged.ToBytes(body.GetHashAndReset()));
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
            TeacherCacheHeader header = TeacherCacheHeader.Read(path);
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
