using System.Diagnostics;
using System.Text.RegularExpressions;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using Spectre.Console;
using static TorchSharp.torch;

namespace OnnxTeacherSample;

/// <summary>
/// The teacher's embeddings of a set of images, labelled once into a values cache on disk. Labelling can be split
/// over processes or machines: <c>--shard i/N</c> (or an array job's environment) labels one contiguous range into
/// its own shard file; a later run without a shard finds all N shards and merges them into the cache.
/// </summary>
internal static partial class TeacherLabels
{
    private const int Batch = 16;

    /// <summary>Labels shard <paramref name="shard"/> of <paramref name="images"/> into its shard file (kept when already complete).</summary>
    public static string LabelShard(ResNetTeacher teacher, Tensor images, string cachePath, TeacherCacheShard shard, string name)
    {
        string path = shard.PathFor(cachePath);
        if (File.Exists(path)) return path;
        (long start, long length) = shard.RangeOf(images.shape[0]);
        Label(teacher, images.narrow(0, start, length), path, $"{name}, shard {shard}", (shard, images.shape[0]));
        return path;
    }

    /// <summary>
    /// Opens the cache of <paramref name="images"/>: as it is when it exists, merged from shard files when a complete
    /// set of them exists, otherwise labelled now in this process.
    /// </summary>
    public static TeacherCache Open(ResNetTeacher teacher, Tensor images, string cachePath, string name)
    {
        if (!File.Exists(cachePath))
        {
            IReadOnlyList<string>? shards = CompleteShardSet(cachePath);
            if (shards is not null)
            {
                TeacherCache.Merge(cachePath, shards);
                AnsiConsole.MarkupLine($"{Markup.Escape(name)}: merged {shards.Count} shard files into {Markup.Escape(cachePath)}");
            }
            else
            {
                Label(teacher, images, cachePath, name);
            }
        }
        var cache = TeacherCache.Open(cachePath);
        if (cache.Examples != images.shape[0] || cache.Classes != 512)
        {
            long examples = cache.Examples;
            cache.Dispose();
            throw new InvalidDataException($"{cachePath} holds {examples} embeddings; this run needs {images.shape[0]} of width 512. Delete it (or pick another --cache folder).");
        }
        return cache;
    }

    private static IReadOnlyList<string>? CompleteShardSet(string cachePath)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(cachePath))!, file = Path.GetFileName(cachePath);
        if (!Directory.Exists(folder)) return null;
        var counts = Directory.EnumerateFiles(folder, file + ".shard-*-of-*")
            .Select(p => ShardName().Match(Path.GetFileName(p)[file.Length..]))
            .Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).Distinct();
        foreach (int count in counts)
        {
            IReadOnlyList<string> paths = TeacherCacheShard.PathsFor(cachePath, count);
            if (paths.All(File.Exists)) return paths;
        }
        return null;
    }

    [GeneratedRegex(@"^\.shard-\d+-of-(\d+)$")]
    private static partial Regex ShardName();

    private static void Label(ResNetTeacher teacher, Tensor images, string path, string name, (TeacherCacheShard Shard, long SetExamples)? part = null)
    {
        long count = images.shape[0];
        var clock = Stopwatch.StartNew();
        // float32: the stored embeddings are exactly what ONNX Runtime returned (2 KB per image). The identity names the
        // teacher, so shards of another teacher's run are never merged with these.
        using TeacherCacheWriter writer = TeacherCacheWriter.ForValues(path, ScalarType.Float32).WithIdentity("ResNet-18 (ML.NET DnnImageFeaturizer 0.23.1), Pooling395_Output_0");
        if (part is { } p) writer.ForShard(p.Shard, p.SetExamples);
        AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn()).Start(ctx =>
        {
            ProgressTask task = ctx.AddTask($"ResNet-18 labels {name}", maxValue: count);
            for (long start = 0; start < count; start += Batch)
            {
                using var scope = NewDisposeScope();
                using ModelOutput output = teacher.Run(images.narrow(0, start, Math.Min(Batch, count - start)), OutputRequest.LogitsOnly);
                writer.Append(output.Logits);
                task.Value = writer.Examples;
            }
        });
        writer.Complete();
        AnsiConsole.MarkupLine($"{Markup.Escape(name)}: {count:N0} images labelled in {clock.Elapsed.TotalSeconds:F0} s ({clock.Elapsed.TotalMilliseconds / count:F1} ms per image)");
    }
}
