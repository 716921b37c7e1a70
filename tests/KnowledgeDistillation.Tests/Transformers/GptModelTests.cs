using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Transformers;

public class GptModelTests
{
    [Fact]
    public void Every_output_has_its_documented_shape()
    {
        using var scope = NewDisposeScope();
        GptModel model = TinyModels.GptModel();
        Tensor ids = TinyModels.Ids(2, 3, 10, 37);

        using ModelOutput output = model.Run(new TokenBatch(ids), OutputRequest.Everything);

        output.Logits.shape.Should().Equal(3, 10, 37);
        output.HiddenStates.Should().HaveCount(3, "embedding output plus one per layer");
        output.HiddenStates!.Should().OnlyContain(h => h.shape.SequenceEqual(new long[] { 3, 10, 24 }));
        output.AttentionScores.Should().HaveCount(2);
        output.AttentionProbabilities!.Should().OnlyContain(a => a.shape.SequenceEqual(new long[] { 3, 3, 10, 10 }));
        output.LayerCount.Should().Be(2);
        model.call(ids).shape.Should().Equal(3, 10, 37);
    }

    [Fact]
    public void Attention_is_causal_changing_a_later_token_never_changes_earlier_outputs()
    {
        using var scope = NewDisposeScope();
        GptModel model = TinyModels.GptModel();
        Tensor ids = TinyModels.Ids(3, 2, 12, 37);
        using var noGrad = no_grad();
        Tensor before = model.call(ids);

        for (int t = 0; t < 11; t++)
        {
            Tensor changed = ids.clone();
            changed[TensorIndex.Colon, t + 1] = (changed[TensorIndex.Colon, t + 1] + 1) % 37;
            Tensor after = model.call(changed);
            after[TensorIndex.Colon, TensorIndex.Slice(0, t + 1)].ShouldBeClose(before[TensorIndex.Colon, TensorIndex.Slice(0, t + 1)], 1e-6);
            (after[TensorIndex.Colon, t + 1] - before[TensorIndex.Colon, t + 1]).abs().max().item<float>().Should().BeGreaterThan(1e-4f);
        }
    }

    [Fact]
    public void Attention_maps_are_lower_triangular_probabilities()
    {
        using var scope = NewDisposeScope();
        using ModelOutput output = TinyModels.GptModel().Run(new TokenBatch(TinyModels.Ids(4, 2, 6, 37)), new OutputRequest(AttentionProbabilities: true));

        foreach (Tensor p in output.AttentionProbabilities!)
        {
            p.sum(-1).ShouldBeClose(ones(2, 3, 6), 1e-5);
            p.triu(1).abs().max().item<float>().Should().Be(0);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Requesting_maps_and_hidden_states_leaves_logits_and_hidden_states_unchanged(bool tie)
    {
        using var scope = NewDisposeScope();
        GptModel model = TinyModels.GptModel(config: TinyModels.Gpt(tie));
        Tensor ids = TinyModels.Ids(5, 2, 9, 37);
        Tensor mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0 }, [2, 9]);

        foreach (Tensor? m in new[] { null, mask })
        {
            using ModelOutput fast = model.Run(new TokenBatch(ids, m), OutputRequest.LogitsOnly);
            using ModelOutput hiddenOnly = model.Run(new TokenBatch(ids, m), new OutputRequest(HiddenStates: true)); // fused attention
            using ModelOutput full = model.Run(new TokenBatch(ids, m), OutputRequest.Everything);                 // explicit attention
            full.Logits.ShouldBeClose(fast.Logits, 1e-5);
            for (int layer = 0; layer < full.HiddenStates!.Count; layer++) full.HiddenStates[layer].ShouldBeClose(hiddenOnly.HiddenStates![layer], 1e-5);
            fast.HiddenStates.Should().BeNull();
            fast.AttentionScores.Should().BeNull();
            hiddenOnly.AttentionProbabilities.Should().BeNull();
        }
    }

    [Fact]
    public void Right_padding_does_not_change_the_real_positions()
    {
        using var scope = NewDisposeScope();
        GptModel model = TinyModels.GptModel();
        Tensor ids = TinyModels.Ids(6, 1, 5, 37);
        Tensor padded = cat([ids, zeros([1, 3], dtype: ScalarType.Int64)], 1);
        Tensor mask = tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 0 }, [1, 8]);

        using ModelOutput alone = model.Run(new TokenBatch(ids), OutputRequest.LogitsOnly);
        using ModelOutput withPadding = model.Run(new TokenBatch(padded, mask), OutputRequest.LogitsOnly);

        withPadding.Logits[TensorIndex.Colon, TensorIndex.Slice(0, 5)].ShouldBeClose(alone.Logits, 1e-5);
    }

    [Fact]
    public void Tied_embeddings_share_one_matrix()
    {
        GptModel tied = TinyModels.GptModel(config: TinyModels.Gpt(tie: true));
        GptModel untied = TinyModels.GptModel(config: TinyModels.Gpt(tie: false));

        tied.named_parameters().Select(p => p.name).Should().NotContain(n => n.StartsWith("lm_head", StringComparison.Ordinal));
        untied.named_parameters().Select(p => p.name).Should().Contain("lm_head.weight");
        (untied.parameters().Sum(p => p.numel()) - tied.parameters().Sum(p => p.numel())).Should().Be(37 * 24);
    }

    [Fact]
    public void Bad_inputs_and_configurations_fail_clearly()
    {
        using var scope = NewDisposeScope();
        GptModel model = TinyModels.GptModel();

        ((Action)(() => model.call(zeros(2, 4)))).Should().Throw<ArgumentException>().WithMessage("InputIds must be integer token ids of shape [B, S]; got Float32 with shape [2, 4].*");
        ((Action)(() => model.call(zeros([1, 17], dtype: ScalarType.Int64)))).Should().Throw<ArgumentException>().WithMessage("InputIds has sequence length 17; the model's ContextLength allows 1 to 16.*");
        ((Action)(() => model.call(full([1, 3], 37L)))).Should().Throw<ArgumentException>().WithMessage("InputIds must lie in [0, 37) (VocabSize); found 37.*");
        ((Action)(() => model.Run(new TokenBatch(zeros([1, 3], dtype: ScalarType.Int64), ones([1, 4], dtype: ScalarType.Int64)), OutputRequest.LogitsOnly)))
            .Should().Throw<ArgumentException>().WithMessage("AttentionMask must have the shape of InputIds, [1, 3]; got [1, 4].*");
        ((Action)(() => new GptModel(TinyModels.Gpt() with { Heads = 5 }))).Should().Throw<ArgumentException>().WithMessage("Heads (5) must divide Width (24).*");
        ((Action)(() => new GptModel(TinyModels.Gpt() with { Dropout = 1 }))).Should().Throw<ArgumentException>().WithMessage("Dropout must lie in [0, 1); got 1.*");
        // Sizes whose parameters cannot fit in memory are refused before libtorch allocates anything (it would end the process).
        ((Action)(() => new GptModel(TinyModels.Gpt() with { Layers = 1_000_000, Width = 768, Heads = 12 }))).Should().Throw<ArgumentException>()
            .WithMessage("These sizes imply about *e+12 parameters*Layers 1000000*Nothing was allocated.*");
        ((Action)(() => new LlamaModel(new LlamaConfig { VocabSize = 100, Width = 64, Heads = 4, FeedForwardWidth = 1_000_000_000, Layers = 4 }))).Should().Throw<ArgumentException>()
            .WithMessage("These sizes imply*FeedForwardWidth 1000000000*");
        ((Action)(() => new BertModel(new BertConfig { VocabSize = 100, Width = 600_000_000, Heads = 1, Layers = 1 }))).Should().Throw<ArgumentException>()
            .WithMessage("*Width*does not fit a feed-forward width*");
    }
}
