using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Transformers;

/// <summary>
/// The Llama-family decoder beyond the PyTorch fixtures (which pin its numbers): its invariants, an explicit head
/// width, and the student-construction tools working for it as for GPT and BERT.
/// </summary>
public class LlamaModelTests
{
    private static LlamaConfig Config(int keyValueHeads = 2, int headWidth = 0, int? window = null) => new()
    {
        VocabSize = 41, ContextLength = 24, Width = 32, Heads = 4, KeyValueHeads = keyValueHeads, HeadWidth = headWidth, Layers = 4,
        FeedForwardWidth = 48, SlidingWindow = window, RopeTheta = 500,
    };

    private static LlamaModel Model(LlamaConfig config, int seed = 1)
    {
        manual_seed(seed);
        var model = new LlamaModel(config);
        model.eval();
        return model;
    }

    [Theory]
    [InlineData(4, 0, null)]
    [InlineData(1, 0, null)]
    [InlineData(2, 12, null)]
    [InlineData(2, 0, 3)]
    public void The_fused_path_equals_the_explicit_one_and_outputs_have_their_documented_shapes(int keyValueHeads, int headWidth, int? window)
    {
        using var scope = NewDisposeScope();
        LlamaModel model = Model(Config(keyValueHeads, headWidth, window));
        Tensor ids = TinyModels.Ids(2, 3, 10, 41);
        using var noGrad = no_grad();

        Tensor fast = model.call(ids);
        using ModelOutput all = model.Run(new TokenBatch(ids), OutputRequest.Everything);

        all.Logits.ShouldBeClose(fast, 1e-5);
        all.HiddenStates.Should().HaveCount(5).And.OnlyContain(h => h.shape.SequenceEqual(new long[] { 3, 10, 32 }));
        all.AttentionProbabilities!.Should().OnlyContain(p => p.shape.SequenceEqual(new long[] { 3, 4, 10, 10 }));
        foreach (Tensor p in all.AttentionProbabilities!)
        {
            p.sum(-1).ShouldBeClose(ones(3, 4, 10), 1e-5);
            p.triu(1).abs().max().item<float>().Should().Be(0);
            if (window is { } w) p.tril(-w).abs().max().item<float>().Should().Be(0, "a query sees at most the last {0} keys", w);
        }
    }

    [Fact]
    public void Rotary_positions_make_attention_depend_on_relative_not_absolute_position()
    {
        // With one layer and no padding, shifting a sequence's window changes logits only through content; the same
        // tokens at positions 0..S-1 give the same scores between tokens i and j as any shift of them (RoPE's defining property).
        using var scope = NewDisposeScope();
        LlamaModel model = Model(Config() with { Layers = 1 });
        Tensor ids = TinyModels.Ids(5, 1, 6, 41);
        using var noGrad = no_grad();
        Tensor scores = model.Run(new TokenBatch(ids), new OutputRequest(AttentionScores: true)).AttentionScores![0];
        Tensor shifted = model.Run(new TokenBatch(cat([TinyModels.Ids(6, 1, 3, 41), ids], 1)), new OutputRequest(AttentionScores: true)).AttentionScores![0];

        shifted[.., .., 3.., 3..].ShouldBeClose(scores, 1e-4);
    }

    [Fact]
    public void A_student_copies_the_chosen_layers_and_works_with_layer_maps_and_compression_reports()
    {
        using var scope = NewDisposeScope();
        LlamaModel teacher = Model(Config());

        Student<LlamaModel> student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 2, Selection = LayerSelection.Explicit(1, 3), KeyValueHeads = 1 });

        student.Model.Config.Layers.Should().Be(2);
        student.Transfer.TeacherLayers.Should().Equal(1, 3);
        using (no_grad())
        {
            student.Model.state_dict()["blocks.1.feed_forward.gate.weight"].IsIdenticalTo(teacher.state_dict()["blocks.3.feed_forward.gate.weight"]).Should().BeTrue();
            student.Model.state_dict()["blocks.0.attention.query.weight"].IsIdenticalTo(teacher.state_dict()["blocks.1.attention.query.weight"]).Should().BeTrue();
        }
        student.Transfer.Skipped.Select(s => s.Student).Should().BeEquivalentTo(
            ["blocks.0.attention.key.weight", "blocks.0.attention.value.weight", "blocks.1.attention.key.weight", "blocks.1.attention.value.weight"],
            "one key/value head instead of two changes only the key and value projections");
        LayerMap map = LayerSelection.Explicit(1, 3).Map(teacher.Config, student.Model.Config);
        map.Pairs.Should().Equal(new LayerPair(0, 1), new LayerPair(1, 3));
        CompressionReport report = CompressionReport.Compare(teacher, student.Model);
        report.ParameterRatio.Should().BeLessThan(0.75);
    }

    [Fact]
    public void A_bad_configuration_names_the_setting()
    {
        ((Action)(() => new LlamaModel(Config(keyValueHeads: 3)))).Should().Throw<ArgumentException>().WithMessage("KeyValueHeads (3) must divide Heads (4).*");
        ((Action)(() => new LlamaModel(Config(headWidth: 7)))).Should().Throw<ArgumentException>().WithMessage("The head width must be even for rotary embeddings; got 7.*");
        ((Action)(() => new LlamaModel(Config(window: 0)))).Should().Throw<ArgumentException>().WithMessage("SlidingWindow must be null or positive; got 0.*");
        ((Action)(() => new LlamaModel(Config() with { RopeTheta = double.NaN }))).Should().Throw<ArgumentException>().WithMessage("RopeTheta must be positive and finite*");
    }
}
