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
        new FileInfo(folder.PathOf("features.kdtc")).Length.Should().Be(160 + 2 * cache.BytesPerRow * 3, "a 160-byte header, then the rows");

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
        using ModelOutput output = teacher.Run(tensor(new long[] { 1, 0 }), OutputRequest.LogitsOnly);
        output.Logits.eq(read).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void A_top_k_cache_refuses_ReadValues_and_a_cache_of_an_earlier_format_is_refused_with_advice()
    {
        using var folder = new TemporaryFolder();
        using (var writer = new TeacherCacheWriter(folder.PathOf("c.kdtc"), 2, 1.0))
        {
            writer.Append(Inputs(3, 5));
            writer.Complete();
        }
        byte[] bytes = File.ReadAllBytes(folder.PathOf("c.kdtc"));
        BitConverter.ToInt32(bytes, 4).Should().Be(3, "format 3: checksum and shard record");
        using (var cache = TeacherCache.Open(folder.PathOf("c.kdtc")))
        {
            cache.Content.Should().Be(TeacherCacheContent.TopKProbabilities);
            FluentActions.Invoking(() => cache.ReadValues(tensor(new long[] { 0 }))).Should().Throw<InvalidOperationException>().WithMessage("*top-k*");
        }
        BitConverter.GetBytes(1).CopyTo(bytes, 4);
        File.WriteAllBytes(folder.PathOf("old.kdtc"), bytes);
        FluentActions.Invoking(() => TeacherCache.Open(folder.PathOf("old.kdtc"))).Should().Throw<InvalidDataException>()
            .WithMessage("*old.kdtc is a format 1 teacher cache, written by an earlier development version*label the transfer set again.");
    }

    public static TheoryData<bool, int> ShardCases() => new() { { true, 1 }, { true, 3 }, { false, 4 }, { false, 23 }, { true, 30 } };

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
            // More shards than examples: some ranges are empty, and those shards are written (empty) all the same.
            var shard = new TeacherCacheShard(index, shards);
            (long first, long length) = shard.RangeOf(examples);
            using TeacherCacheWriter writer = Writer(shard.PathFor(merged)).ForShard(shard, examples);
            for (long at = 0; at < length; at += 2) writer.Append(Teacher(inputs.narrow(0, first + at, Math.Min(2, length - at))));
            writer.Complete();
        }
        IReadOnlyList<string> parts = TeacherCacheShard.PathsFor(merged, shards);
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
        using (TeacherCacheWriter a = TeacherCacheWriter.ForValues(folder.PathOf("a")).ForShard(new TeacherCacheShard(0, 2), 4))
        {
            a.Append(Inputs(2, 4));
            a.Complete();
        }
        using (TeacherCacheWriter b = new TeacherCacheWriter(folder.PathOf("b"), 2, 1.0).ForShard(new TeacherCacheShard(1, 2), 4))
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
        From(("SLURM_ARRAY_TASK_ID", "6"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_STEP", "2"), ("SLURM_ARRAY_TASK_COUNT", "8"))
            .Should().Be(new TeacherCacheShard(3, 8), "--array=0-14:2 runs tasks 0, 2, …, 14: task 6 is the fourth");
        FluentActions.Invoking(() => From(("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_STEP", "2"), ("SLURM_ARRAY_TASK_COUNT", "8"))).Should().Throw<FormatException>()
            .WithMessage("*SLURM_ARRAY_TASK_STEP 2*");
        FluentActions.Invoking(() => From(("JOB_COMPLETION_INDEX", "1"))).Should().Throw<FormatException>().WithMessage("*KD_SHARD_COUNT*");
        FluentActions.Invoking(() => From(("JOB_COMPLETION_INDEX", "8"), ("KD_SHARD_COUNT", "8"))).Should().Throw<FormatException>().WithMessage("*shard 8 of 8*");
        FluentActions.Invoking(() => From(("KD_SHARD", "x"))).Should().Throw<FormatException>().WithMessage("KD_SHARD*");
        FluentActions.Invoking(() => From(("SLURM_ARRAY_TASK_ID", "one"), ("SLURM_ARRAY_TASK_COUNT", "4"))).Should().Throw<FormatException>().WithMessage("SLURM_ARRAY_TASK_ID*");
        FluentActions.Invoking(() => new TeacherCacheShard(3, 3)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("index");
    }

    /// <summary>Writes the shards of <paramref name="examples"/> examples split <paramref name="count"/> ways under <paramref name="cache"/>, optionally with an identity.</summary>
    private static IReadOnlyList<string> WriteShards(string cache, int examples, int count, string? identity = null, int width = 4)
    {
        Tensor inputs = Inputs(examples, width);
        foreach (int i in Enumerable.Range(0, count))
        {
            var shard = new TeacherCacheShard(i, count);
            (long start, long length) = shard.RangeOf(examples);
            using TeacherCacheWriter writer = TeacherCacheWriter.ForValues(shard.PathFor(cache)).ForShard(shard, examples);
            if (identity is not null) writer.WithIdentity(identity);
            if (length > 0) writer.Append(Teacher(inputs.narrow(0, start, length)));
            writer.Complete();
        }
        return TeacherCacheShard.PathsFor(cache, count);
    }

    [Fact]
    public void Only_the_complete_set_of_shards_of_one_run_in_order_opens_or_merges()
    {
        using var folder = new TemporaryFolder();
        IReadOnlyList<string> set = WriteShards(folder.PathOf("a.kdtc"), 9, 3, "teacher v1");
        IReadOnlyList<string> otherSize = WriteShards(folder.PathOf("b.kdtc"), 12, 3, "teacher v1");
        IReadOnlyList<string> otherTeacher = WriteShards(folder.PathOf("c.kdtc"), 9, 3, "teacher v2");
        void Refused(string[] paths, string message)
        {
            FluentActions.Invoking(() => TeacherCache.Open(paths)).Should().Throw<InvalidDataException>().WithMessage(message);
            FluentActions.Invoking(() => TeacherCache.Merge(folder.PathOf("m.kdtc"), paths)).Should().Throw<InvalidDataException>().WithMessage(message);
            File.Exists(folder.PathOf("m.kdtc")).Should().BeFalse();
        }

        Refused([set[1], set[0], set[2]], "*a.kdtc.shard-1-of-3 is shard 1 of 3, given as file 0 of 3*in order*");
        Refused([set[0], set[0], set[2]], "*a.kdtc.shard-0-of-3 is shard 0 of 3, given as file 1 of 3*");
        Refused([set[0], set[1]], "*shard 0 of 3, given as file 0 of 2*");
        Refused([set[1]], "*shard 1 of 3, given alone*");
        Refused([set[0], otherSize[1], set[2]], "*b.kdtc.shard-1-of-3 is a shard of a set of 12 examples*a set of 9*different labelling runs.");
        Refused([set[0], otherTeacher[1], set[2]], "*c.kdtc.shard-1-of-3 is a shard of another identity*different labelling runs.");
        using var cache = TeacherCache.Open([.. set]);
        cache.Examples.Should().Be(9);
    }

    [Fact]
    public void A_flipped_byte_or_a_rewritten_header_is_caught_by_the_checksum()
    {
        using var folder = new TemporaryFolder();
        string path = WriteShards(folder.PathOf("a.kdtc"), 6, 1, width: 8)[0];
        byte[] good = File.ReadAllBytes(path);
        void Damaged(Action<byte[]> damage, string message)
        {
            byte[] bytes = (byte[])good.Clone();
            damage(bytes);
            File.WriteAllBytes(path, bytes);
            FluentActions.Invoking(() => TeacherCache.Open(path)).Should().Throw<InvalidDataException>().WithMessage(message);
        }

        Damaged(b => b[200] ^= 0x01, "*a.kdtc.shard-0-of-1 is damaged: its content does not match the checksum in its header.");
        Damaged(b => b[^1] = 0xFF, "*is damaged*"); // a float16's exponent byte set to all ones would read as NaN
        // The same length reinterpreted: 6 examples × 8 values as 3 × 16. Every size agrees; only the checksum can tell.
        Damaged(b => { BitConverter.GetBytes(3L).CopyTo(b, 8); BitConverter.GetBytes(16L).CopyTo(b, 24); BitConverter.GetBytes(16).CopyTo(b, 32); BitConverter.GetBytes(3L).CopyTo(b, 72); },
            "*is damaged*");
        Damaged(b => BitConverter.GetBytes(5).CopyTo(b, 40), "*not a possible teacher cache: the logits' rank is 5*");
        Damaged(b => BitConverter.GetBytes(0L).CopyTo(b, 16), "*not a possible teacher cache: it declares 0 rows per example*");
        Damaged(b => { BitConverter.GetBytes(1L << 62).CopyTo(b, 8); BitConverter.GetBytes(1L << 62).CopyTo(b, 72); }, "*bytes but its header describes*truncated or damaged.");
        File.WriteAllBytes(path, good);
        using var cache = TeacherCache.Open(path);
        cache.Examples.Should().Be(6);
    }

    [Fact]
    public void A_shard_writer_accepts_exactly_its_range_and_a_default_shard_is_refused()
    {
        using var folder = new TemporaryFolder();
        var shard = new TeacherCacheShard(1, 4);
        using (TeacherCacheWriter writer = TeacherCacheWriter.ForValues(folder.PathOf("x")).ForShard(shard, 10))
        {
            writer.Append(Inputs(3, 4)); // shard 1 of 4 of 10 holds examples 2 to 5: three of them
            writer.Append(Inputs(1, 4));
            FluentActions.Invoking(() => writer.Complete()).Should().Throw<InvalidOperationException>().WithMessage("Shard 1/4 of 10 examples must hold 3 (examples 2 to 5); 4 were appended.");
        }
        File.Exists(folder.PathOf("x")).Should().BeFalse();
        using (TeacherCacheWriter writer = TeacherCacheWriter.ForValues(folder.PathOf("y")))
        {
            writer.Append(Inputs(1, 4));
            FluentActions.Invoking(() => writer.ForShard(shard, 10)).Should().Throw<InvalidOperationException>().WithMessage("Call ForShard before the first Append.");
        }
        TeacherCacheShard none = default;
        FluentActions.Invoking(() => none.RangeOf(10)).Should().Throw<InvalidOperationException>().WithMessage("default(TeacherCacheShard) is not a shard*");
        FluentActions.Invoking(() => TeacherCacheWriter.ForValues(folder.PathOf("z")).ForShard(none, 10)).Should().Throw<InvalidOperationException>();
        new TeacherCacheShard(3, 4).RangeOf(1L << 62).Should().Be((3L << 60, 1L << 60), "ranges of huge sets do not wrap");
    }
}
