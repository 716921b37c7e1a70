using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Students;

public class SizeAndLayerMapTests
{
    [Fact]
    public void Parameter_and_byte_counts_match_hand_counts()
    {
        var teacher = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2));
        var student = nn.Sequential(nn.Linear(3, 2));
        // Linear(3,4): 12 + 4; BatchNorm1d(4): weight 4 + bias 4 (+ buffers running_mean 4, running_var 4, num_batches_tracked 1); Linear(4,2): 8 + 2.
        const long teacherParameters = 12 + 4 + 4 + 4 + 8 + 2, teacherState = teacherParameters + 4 + 4 + 1;

        CompressionReport report = CompressionReport.Compare(teacher, student);

        report.Teacher.Should().Be(new ModelSize(teacherParameters, teacherState, teacherState * 4, teacherState * 2));
        report.Student.Should().Be(new ModelSize(8, 8, 32, 16));
        report.ParameterRatio.Should().BeApproximately(8.0 / 34, 1e-12);
        report.FractionSaved.Should().BeApproximately(1 - 32.0 / 172, 1e-12);
        report.Latency.Should().BeNull();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_reference_transformers_size_matches_the_formula(bool tie)
    {
        GptConfig c = TinyModels.Gpt(tie);
        long w = c.Width, f = c.EffectiveFeedForwardWidth, v = c.VocabSize;
        long perLayer = 2 * w + 2 * w + (3 * w * w + 3 * w) + (w * w + w) + (w * f + f) + (f * w + w);
        long expected = v * w + c.ContextLength * w + c.Layers * perLayer + 2 * w + (tie ? 0 : v * w);

        ModelSize size = ModelSize.Of(new GptModel(c));

        size.Parameters.Should().Be(expected);
        size.Float32Bytes.Should().Be(expected * 4);
    }

    [Fact]
    public void The_report_measures_latency_on_request_and_prints_a_table()
    {
        using var scope = NewDisposeScope();
        GptModel teacher = TinyModels.GptModel(config: TinyModels.Gpt() with { Layers = 4 });
        GptModel student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 2 }).Model;
        Tensor ids = TinyModels.Ids(1, 2, 16, 37);

        var calls = new Dictionary<nn.Module, int> { [teacher] = 0, [student] = 0 };
        // Each forward takes at least a known time (a sleep), so the medians have lower bounds a wrong timer would miss.
        CompressionReport report = CompressionReport.Compare(teacher, student, m =>
        {
            calls[m]++;
            ((GptModel)m).call(ids);
            Thread.Sleep(m == teacher ? 40 : 10);
        }, runs: 3, warmup: 1);

        calls[teacher].Should().Be(4, "one warm-up and three timed runs");
        calls[student].Should().Be(4);
        report.Latency!.TeacherMilliseconds.Should().BeGreaterThanOrEqualTo(40);
        report.Latency.StudentMilliseconds.Should().BeGreaterThanOrEqualTo(10);
        report.Latency.Runs.Should().Be(3);
        student.training.Should().BeTrue("timing restores the training mode it found");
        string table = report.ToString();
        table.Should().Contain("parameters").And.Contain("weights, float32").And.Contain("weights, bfloat16").And.Contain("x faster (3 runs)");
        table.Should().Contain(ModelSize.Of(teacher).Parameters.ToString("N0", System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void A_layer_map_pairs_layers_and_the_objective_adds_a_projection_per_pair_when_widths_differ()
    {
        var teacher = new BertConfig { VocabSize = 100, Width = 48, Heads = 12, Layers = 12 };
        var student = new BertConfig { VocabSize = 100, Width = 24, Heads = 4, Layers = 4 };

        LayerMap map = LayerSelection.UniformSpread.Map(teacher, student, includeEmbeddings: true);

        map.Pairs.Should().Equal(new LayerPair(0, 0), new LayerPair(1, 4), new LayerPair(2, 7), new LayerPair(3, 11));
        map.HiddenStateIndices.Should().Equal((0, 0), (1, 1), (2, 5), (3, 8), (4, 12));
        map.AttentionIndices.Should().Equal((0, 0), (1, 4), (2, 7), (3, 11));
        map.NeedsProjection.Should().BeTrue();
        // Five matched hidden states, each with its own 24 -> 48 projection (weight and bias).
        DistillationObjective.Create().HiddenStateMse(1.0, map).Build().parameters().Select(p => string.Join("x", p.shape)).Should()
            .Equal(Enumerable.Range(0, 5).SelectMany(_ => new[] { "48x24", "48" }));
        DistillationObjective.Create().HiddenStateCosine(1.0, LayerSelection.EveryOther.Map(teacher, teacher with { Layers = 6 })).Build()
            .parameters().Should().BeEmpty("equal widths need no projection");
    }

    [Fact]
    public void A_layer_map_from_explicit_pairs_checks_them()
    {
        LayerMap.FromPairs([new LayerPair(1, 5), new LayerPair(0, 2)], 8, 8, 2, 2).Pairs.Should().Equal(new LayerPair(0, 2), new LayerPair(1, 5));
        ((Action)(() => LayerMap.FromPairs([new LayerPair(0, 2), new LayerPair(0, 3)], 8, 8, 2, 2))).Should().Throw<ArgumentException>().WithMessage("Student layer 0 is matched twice*");
        ((Action)(() => LayerMap.FromPairs([new LayerPair(-1, 2)], 8, 8, 2, 2))).Should().Throw<ArgumentException>().WithMessage("*0 or more*");
    }

    [Fact]
    public void A_layer_map_rejects_head_counts_that_cannot_be_grouped()
    {
        var teacher = new GptConfig { VocabSize = 10, Width = 24, Heads = 4, Layers = 4 };

        ((Action)(() => LayerSelection.FirstK.Map(teacher, teacher with { Heads = 3, Layers = 2 }))).Should().Throw<ArgumentException>()
            .WithMessage("The teacher's head count (4) must be a positive multiple of the student's (3)*");
        ((Action)(() => LayerSelection.FirstK.Map(teacher, teacher with { Layers = 5 }))).Should().Throw<ArgumentException>()
            .WithMessage("A student cannot have more layers (5) than its teacher (4)*");
    }
}
