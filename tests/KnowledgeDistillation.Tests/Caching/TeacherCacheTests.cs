using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Tests.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Caching;

/// <summary>Writing and reading teacher caches: contents against a double-precision softmax, layouts, shards and bad input.</summary>
public class TeacherCacheTests
{
    /// <summary>Softmax(z / T) of one row in double precision.</summary>
    private static double[] Probabilities(double[] logits, int row, int classes, double temperature) =>
        Reference.LogSoftmax(logits.AsSpan(row * classes, classes), temperature).Select(Math.Exp).ToArray();

    [Fact]
    public void Sequence_cache_round_trip_keeps_the_top_k_classes_and_the_tail_mass_to_float16_precision()
    {
        using var folder = new TemporaryFolder();
        using var scope = NewDisposeScope();
        const int batch = 3, sequence = 4, classes = 9, k = 3;
        const double temperature = 2.0;
        double[] logits = TestTensors.Normal(31, 2 * batch * sequence * classes, 3);
        using (var writer = new TeacherCacheWriter(folder.PathOf("cache.kdtc"), k, temperature))
        {
            writer.Append(tensor(logits[..(batch * sequence * classes)], [batch, sequence, classes]).to(ScalarType.Float32));
            writer.Append(tensor(logits[(batch * sequence * classes)..], [batch, sequence, classes]).to(ScalarType.Float32));
            writer.Complete();
        }

        using var cache = TeacherCache.Open(folder.PathOf("cache.kdtc"));
        cache.Examples.Should().Be(2 * batch);
        cache.RowsPerExample.Should().Be(sequence);
        cache.BytesPerRow.Should().Be((k + 1) * 2 + k * 2);
        long[] examples = [5, 0, 3];
        using var targets = cache.Read(tensor(examples));
        targets.Probabilities.shape.Should().Equal(3, sequence, k + 1);
        targets.Indices.shape.Should().Equal(3, sequence, k);
        double[] p = TestTensors.Values(targets.Probabilities);
        long[] ids = targets.Indices.data<long>().ToArray();
        for (int e = 0; e < examples.Length; e++)
        {
            for (int s = 0; s < sequence; s++)
            {
                int row = (int)examples[e] * sequence + s, at = e * sequence + s;
                double[] expected = Probabilities(logits, row, classes, temperature);
                int[] order = Enumerable.Range(0, classes).OrderByDescending(c => expected[c]).ToArray();
                for (int i = 0; i < k; i++)
                {
                    ids[at * k + i].Should().Be(order[i]);
                    p[at * (k + 1) + i].Should().BeApproximately(expected[order[i]], 1e-3 * expected[order[i]]);
                }
                double tail = order.Skip(k).Sum(c => expected[c]);
                p[at * (k + 1) + k].Should().BeApproximately(tail, 1e-3 * tail + 1e-7);
            }
        }
    }

    [Theory]
    [InlineData(40_000)] // stored as uint16 (above int16's range)
    [InlineData(70_000)] // stored as int32
    public void Large_vocabularies_keep_their_class_indices(int classes)
    {
        using var folder = new TemporaryFolder();
        using var scope = NewDisposeScope();
        Tensor logits = zeros(2, classes);
        logits[0, classes - 1] = 10;
        logits[0, 33_000] = 9;
        logits[1, 7] = 10;
        using (var writer = new TeacherCacheWriter(folder.PathOf("big.kdtc"), 2, 1.0))
        {
            writer.Append(logits);
            writer.Complete();
        }
        using var cache = TeacherCache.Open(folder.PathOf("big.kdtc"));
        cache.BytesPerRow.Should().Be(3 * 2 + 2 * (classes <= 65536 ? 2 : 4));
        using var targets = cache.Read(tensor(new long[] { 0, 1 }));
        targets.Indices.shape.Should().Equal(2, 2);
        targets.Indices[0].data<long>().ToArray().Should().Equal(classes - 1, 33_000);
        targets.Indices[1, 0].item<long>().Should().Be(7);
    }

    [Fact]
    public void Shards_open_as_one_cache_with_indices_running_through_them_in_order()
    {
        using var folder = new TemporaryFolder();
        using var scope = NewDisposeScope();
        Tensor first = randn(4, 6), second = randn(3, 6); // seven examples in shards 0/2 (examples 0–2) and 1/2 (examples 3–6)
        foreach ((string name, Tensor logits, int index) in new[] { ("a.kdtc", first.narrow(0, 0, 3), 0), ("b.kdtc", cat([first.narrow(0, 3, 1), second]), 1) })
        {
            using TeacherCacheWriter writer = new TeacherCacheWriter(folder.PathOf(name), 6, 1.0).ForShard(new TeacherCacheShard(index, 2), 7);
            writer.Append(logits);
            writer.Complete();
        }
        using var cache = TeacherCache.Open(folder.PathOf("a.kdtc"), folder.PathOf("b.kdtc"));
        cache.Examples.Should().Be(7);
        using var targets = cache.Read(tensor(new long[] { 5, 1 }));
        // With k = C the stored distribution is the whole softmax: put it back in class order and compare.
        Tensor restored = zeros(2, 6).scatter(-1, targets.Indices, targets.Probabilities[.., ..6]);
        Tensor expected = stack([second[1], first[1]]).softmax(-1);
        restored.sub(expected).abs().max().item<float>().Should().BeLessThan(1e-3f);
    }

    [Fact]
    public void Shards_written_differently_are_refused_naming_both()
    {
        using var folder = new TemporaryFolder();
        using var scope = NewDisposeScope();
        foreach ((string name, double t, int index) in new[] { ("a.kdtc", 1.0, 0), ("b.kdtc", 2.0, 1) })
        {
            using TeacherCacheWriter writer = new TeacherCacheWriter(folder.PathOf(name), 2, t).ForShard(new TeacherCacheShard(index, 2), 4);
            writer.Append(randn(2, 5));
            writer.Complete();
        }
        Action act = () => TeacherCache.Open(folder.PathOf("a.kdtc"), folder.PathOf("b.kdtc"));
        act.Should().Throw<InvalidDataException>().WithMessage("*b.kdtc*T 2*a.kdtc*T 1*");
    }

    [Fact]
    public void An_unfinished_cache_leaves_no_file_and_an_existing_cache_is_replaced_only_on_completion()
    {
        using var folder = new TemporaryFolder();
        using var scope = NewDisposeScope();
        string path = folder.PathOf("cache.kdtc");
        File.WriteAllText(path, "previous");
        using (var writer = new TeacherCacheWriter(path, 2, 1.0)) writer.Append(randn(3, 5));

        File.ReadAllText(path).Should().Be("previous");
        Directory.GetFiles(folder.Path).Should().ContainSingle();
    }

    [Fact]
    public void Bad_input_is_refused_with_the_argument_and_values()
    {
        using var folder = new TemporaryFolder();
        using var scope = NewDisposeScope();
        FluentActions.Invoking(() => new TeacherCacheWriter(folder.PathOf("x"), 0, 1.0)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("topK");
        FluentActions.Invoking(() => new TeacherCacheWriter(folder.PathOf("x"), 2, 0.0)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("temperature");

        using (var writer = new TeacherCacheWriter(folder.PathOf("x"), 8, 1.0))
        {
            FluentActions.Invoking(() => writer.Append(randn(2, 5))).Should().Throw<ArgumentException>().WithMessage("*topK (8)*5 classes*");
        }
        using (var writer = new TeacherCacheWriter(folder.PathOf("y"), 2, 1.0))
        {
            FluentActions.Invoking(() => writer.Complete()).Should().Throw<InvalidOperationException>().WithMessage("*at least one batch*");
            writer.Append(randn(2, 4, 5));
            FluentActions.Invoking(() => writer.Append(randn(2, 3, 5))).Should().Throw<ArgumentException>().WithMessage("*[B, 4, 5]*[2, 3, 5]*");
            writer.Complete();
            FluentActions.Invoking(() => writer.Append(randn(2, 4, 5))).Should().Throw<ObjectDisposedException>().WithMessage("*already complete*");
        }
        using (var cache = TeacherCache.Open(folder.PathOf("y")))
        {
            FluentActions.Invoking(() => cache.Read(tensor(new long[] { 2 }))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*[0, 2)*got 2*");
        }

        byte[] whole = File.ReadAllBytes(folder.PathOf("y"));
        string truncated = folder.Write("truncated.kdtc", whole[..^10]);
        FluentActions.Invoking(() => TeacherCache.Open(truncated)).Should().Throw<InvalidDataException>().WithMessage("*truncated.kdtc*truncated or damaged*");
        string other = folder.Write("other.kdtc", new byte[100]);
        FluentActions.Invoking(() => TeacherCache.Open(other)).Should().Throw<InvalidDataException>().WithMessage("*not a teacher cache*");
        FluentActions.Invoking(() => TeacherCache.Open(folder.PathOf("missing.kdtc"))).Should().Throw<FileNotFoundException>().WithMessage("*missing.kdtc*");
    }

    [Fact]
    public void Top_k_targets_appended_directly_write_the_bytes_that_appending_their_logits_writes_and_other_settings_are_refused()
    {
        using var folder = new TemporaryFolder();
        manual_seed(17);
        Tensor first = randn(3, 5, 70_000), second = randn(2, 5, 70_000);
        using (var fromLogits = new TeacherCacheWriter(folder.PathOf("logits.kdtc"), 6, 1.5))
        {
            fromLogits.Append(first);
            fromLogits.Append(second);
            fromLogits.Complete();
        }
        using (var fromTargets = new TeacherCacheWriter(folder.PathOf("targets.kdtc"), 6, 1.5))
        {
            foreach (Tensor logits in new[] { first, second })
            {
                using KnowledgeDistillation.Models.TopKTargets targets = KnowledgeDistillation.Models.TopKTargets.FromLogits(logits, 6, 1.5);
                fromTargets.Append(targets, 70_000);
            }
            using KnowledgeDistillation.Models.TopKTargets colder = KnowledgeDistillation.Models.TopKTargets.FromLogits(first, 6, 1.0), wider = KnowledgeDistillation.Models.TopKTargets.FromLogits(first, 7, 1.5);
            ((Action)(() => fromTargets.Append(colder, 70_000))).Should().Throw<ArgumentException>().WithMessage("The targets hold top-6 at T = 1; this cache stores top-6 at T = 1.5.*");
            ((Action)(() => fromTargets.Append(wider, 70_000))).Should().Throw<ArgumentException>().WithMessage("The targets hold top-7 at T = 1.5*");
            using KnowledgeDistillation.Models.TopKTargets same = KnowledgeDistillation.Models.TopKTargets.FromLogits(first, 6, 1.5);
            ((Action)(() => fromTargets.Append(same, 60_000))).Should().Throw<ArgumentException>().WithMessage("The targets must be [B, 5, 70000] like the first batch; got [B, 5, 60000].*");
            fromTargets.Complete();
        }
        File.ReadAllBytes(folder.PathOf("targets.kdtc")).Should().Equal(File.ReadAllBytes(folder.PathOf("logits.kdtc")));
    }
}
