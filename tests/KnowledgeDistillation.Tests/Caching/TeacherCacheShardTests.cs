using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Tests.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Caching;

/// <summary>Values caches (a feature teacher's outputs as they are), sharded labelling from several processes, and merging.</summary>
public class TeacherCacheShardTests
{
    /// <summary>A teacher whose output for an example depends on that example alone (elementwise), so its rows are bit-identical whatever the batch.</summary>
    private static Tensor Teacher(Tensor x) => (x * 3).sin() + x * x - 0.5;

    private static Tensor Inputs(int examples, int width) => tensor(TestTensors.Normal(41, examples * width), [examples, width]).to(ScalarType.Float32);

    [Theory]
    [InlineData(ScalarType.Float32, 0.0)]
    [InlineData(ScalarType.Float16, 1e-3)]
    public void Values_caches_store_the_outputs_themselves_as_float32_exactly_or_float16_to_its_precision(ScalarType precision, double relative)
    {
        using var folder = new TemporaryFolder();
        using var scope = NewDisposeScope();
        double[] values = TestTensors.Normal(5, 2 * 3 * 6, 4);
        using (TeacherCacheWriter writer = TeacherCacheWriter.ForValues(folder.PathOf("features.kdtc"), precision))
        {
            writer.Append(tensor(values[..18], [1, 3, 6]).to(ScalarType.Float32));
            writer.Append(tensor(values[18..], [1, 3, 6]).to(ScalarType.Float32));
            writer.Complete();
        }
        using var cache = TeacherCache.Open(folder.PathOf("features.kdtc"));
        cache.Content.Should().Be(precision == ScalarType.Float32 ? TeacherCacheContent.Float32Values : TeacherCacheContent.Float16Values);
        cache.Examples.Should().Be(2);
        cache.BytesPerRow.Should().Be(6 * (precision == ScalarType.Float32 ? 4 : 2));
        new FileInfo(folder.PathOf("features.kdtc")).Length.Should().Be(64 + 2 * cache.BytesPerRow * 3);

        Tensor read = cache.ReadValues(tensor(new long[] { 1, 0 }));
        read.dtype.Should().Be(ScalarType.Float32);
        read.shape.Should().Equal(2, 3, 6);
        double[] got = TestTensors.Values(read);
        for (int i = 0; i < 18; i++)
        {
            double expected1 = (float)values[18 + i], expected0 = (float)values[i];
            got[i].Should().BeApproximately(expected1, relative * Math.Abs(expected1) + 1e-12);
            got[18 + i].Should().BeApproximately(expected0, relative * Math.Abs(expected0) + 1e-12);
        }

        FluentActions.Invoking(() => cache.Read(tensor(new long[] { 0 }))).Should().Throw<InvalidOperationException>().WithMessage("*ReadValues*");
        var teacher = new CachedTeacher<Tensor>(cache, indices => indices);
        teacher.Provides.Should().Be(ModelOutputKinds.Logits);
        using ModelOutput output = teacher.Forward(tensor(new long[] { 1, 0 }), OutputRequest.LogitsOnly);
        output.Logits.eq(read).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void A_top_k_cache_refuses_ReadValues_and_keeps_the_version_1_layout()
    {
        using var folder = new TemporaryFolder();
        using (var writer = new TeacherCacheWriter(folder.PathOf("c.kdtc"), 2, 1.0))
        {
            writer.Append(Inputs(3, 5));
            writer.Complete();
        }
        byte[] bytes = File.ReadAllBytes(folder.PathOf("c.kdtc"));
        BitConverter.ToInt32(bytes, 4).Should().Be(1, "release 0.1.0's readers open top-k caches");
        using var cache = TeacherCache.Open(folder.PathOf("c.kdtc"));
        cache.Content.Should().Be(TeacherCacheContent.TopKProbabilities);
        FluentActions.Invoking(() => cache.ReadValues(tensor(new long[] { 0 }))).Should().Throw<InvalidOperationException>().WithMessage("*top-k*");
    }

    public static TheoryData<bool, int> ShardCases() => new() { { true, 1 }, { true, 3 }, { false, 4 }, { false, 23 } };

    [Theory]
    [MemberData(nameof(ShardCases))]
    public void Shards_labelled_separately_and_merged_equal_the_single_process_cache_byte_for_byte(bool values, int shards)
    {
        using var folder = new TemporaryFolder();
        const int examples = 23, width = 7;
        Tensor inputs = Inputs(examples, width);
        TeacherCacheWriter Writer(string path) => values ? TeacherCacheWriter.ForValues(path) : new TeacherCacheWriter(path, 3, 2.0);

        string single = folder.PathOf("single.kdtc");
        using (TeacherCacheWriter writer = Writer(single))
        {
            for (int start = 0; start < examples; start += 5) writer.Append(Teacher(inputs.narrow(0, start, Math.Min(5, examples - start))));
            writer.Complete();
        }

        string merged = folder.PathOf("merged.kdtc");
        foreach (int index in Enumerable.Range(0, shards))
        {
            // Each process sees only its own range and uses its own batch size.
            var shard = new TeacherCacheShard(index, shards);
            (long first, long length) = shard.RangeOf(examples);
            if (length == 0) continue;
            using TeacherCacheWriter writer = Writer(shard.PathFor(merged));
            for (long at = 0; at < length; at += 2) writer.Append(Teacher(inputs.narrow(0, first + at, Math.Min(2, length - at))));
            writer.Complete();
        }
        IReadOnlyList<string> parts = TeacherCacheShard.PathsFor(merged, shards).Where(File.Exists).ToList();
        TeacherCache.Merge(merged, parts).Should().Be(merged);

        File.ReadAllBytes(merged).Should().Equal(File.ReadAllBytes(single));
        File.Exists(merged + ".partial").Should().BeFalse();
        using var asShards = TeacherCache.Open([.. parts]);
        asShards.Examples.Should().Be(examples, "the shards also open as one cache without merging");
    }

    [Fact]
    public void Merging_refuses_shards_of_different_layouts_or_missing_ones_and_writes_nothing()
    {
        using var folder = new TemporaryFolder();
        using (TeacherCacheWriter a = TeacherCacheWriter.ForValues(folder.PathOf("a")))
        {
            a.Append(Inputs(2, 4));
            a.Complete();
        }
        using (var b = new TeacherCacheWriter(folder.PathOf("b"), 2, 1.0))
        {
            b.Append(Inputs(2, 4));
            b.Complete();
        }
        FluentActions.Invoking(() => TeacherCache.Merge(folder.PathOf("m"), [folder.PathOf("a"), folder.PathOf("b")]))
            .Should().Throw<InvalidDataException>().WithMessage("*TopKProbabilities*Float16Values*");
        FluentActions.Invoking(() => TeacherCache.Merge(folder.PathOf("m"), [folder.PathOf("a"), folder.PathOf("missing")])).Should().Throw<FileNotFoundException>();
        FluentActions.Invoking(() => TeacherCache.Merge(folder.PathOf("m"), [])).Should().Throw<ArgumentException>().WithParameterName("shards");
        File.Exists(folder.PathOf("m")).Should().BeFalse();
        FluentActions.Invoking(() => TeacherCacheWriter.ForValues(folder.PathOf("x"), ScalarType.Int32)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("precision");
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 3)]
    [InlineData(7, 3)]
    [InlineData(100, 8)]
    [InlineData(5, 8)]
    public void Shard_ranges_tile_the_examples_in_order(long examples, int count)
    {
        long next = 0;
        for (int i = 0; i < count; i++)
        {
            (long start, long length) = new TeacherCacheShard(i, count).RangeOf(examples);
            start.Should().Be(next);
            length.Should().BeInRange(examples / count, examples / count + 1);
            next = start + length;
        }
        next.Should().Be(examples);
    }

    [Fact]
    public void Shards_parse_from_text_and_from_array_job_environments()
    {
        TeacherCacheShard.Parse("2/4").Should().Be(new TeacherCacheShard(2, 4));
        TeacherCacheShard.Parse("2/4").ToString().Should().Be("2/4");
        foreach (string bad in new[] { "4/4", "-1/2", "a/2", "1/0", "1", "1/2/3", "" })
        {
            FluentActions.Invoking(() => TeacherCacheShard.Parse(bad)).Should().Throw<FormatException>().WithMessage($"*\"{bad}\"*");
        }

        TeacherCacheShard? From(params (string Key, string Value)[] variables) =>
            TeacherCacheShard.FromEnvironment(variables.ToDictionary(v => v.Key, v => (string?)v.Value));
        From().Should().BeNull();
        From(("KD_SHARD", "1/3"), ("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "2")).Should().Be(new TeacherCacheShard(1, 3), "KD_SHARD is read first");
        From(("JOB_COMPLETION_INDEX", "5"), ("KD_SHARD_COUNT", "8")).Should().Be(new TeacherCacheShard(5, 8));
        From(("SLURM_ARRAY_TASK_ID", "8"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "8")).Should().Be(new TeacherCacheShard(7, 8), "--array=1-8 gives shards 0 … 7");
        From(("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "4")).Should().Be(new TeacherCacheShard(3, 4));
        FluentActions.Invoking(() => From(("JOB_COMPLETION_INDEX", "1"))).Should().Throw<FormatException>().WithMessage("*KD_SHARD_COUNT*");
        FluentActions.Invoking(() => From(("JOB_COMPLETION_INDEX", "8"), ("KD_SHARD_COUNT", "8"))).Should().Throw<FormatException>().WithMessage("*shard 8 of 8*");
        FluentActions.Invoking(() => From(("KD_SHARD", "x"))).Should().Throw<FormatException>().WithMessage("KD_SHARD*");
        FluentActions.Invoking(() => From(("SLURM_ARRAY_TASK_ID", "one"), ("SLURM_ARRAY_TASK_COUNT", "4"))).Should().Throw<FormatException>().WithMessage("SLURM_ARRAY_TASK_ID*");
        FluentActions.Invoking(() => new TeacherCacheShard(3, 3)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("index");
    }
}
