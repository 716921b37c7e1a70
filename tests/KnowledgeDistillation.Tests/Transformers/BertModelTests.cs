using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Transformers;

public class BertModelTests
{
    [Fact]
    public void Every_output_has_its_documented_shape()
    {
        using var scope = NewDisposeScope();
        BertModel model = TinyModels.BertModel();
        Tensor ids = TinyModels.Ids(2, 4, 7, 29);

        using ModelOutput output = model.Run(new TokenBatch(ids, ones([4, 7], dtype: ScalarType.Bool), zeros([4, 7], dtype: ScalarType.Int64)), OutputRequest.Everything);

        output.Logits.shape.Should().Equal(4, 3);
        output.HiddenStates.Should().HaveCount(4);
        output.HiddenStates!.Should().OnlyContain(h => h.shape.SequenceEqual(new long[] { 4, 7, 16 }));
        output.AttentionScores!.Should().HaveCount(3).And.OnlyContain(a => a.shape.SequenceEqual(new long[] { 4, 4, 7, 7 }));
        model.call(ids).shape.Should().Equal(4, 3);
    }

    [Fact]
    public void Attention_is_bidirectional_changing_the_last_token_changes_the_first_position()
    {
        using var scope = NewDisposeScope();
        BertModel model = TinyModels.BertModel();
        Tensor ids = TinyModels.Ids(3, 1, 6, 29);
        Tensor changed = ids.clone();
        changed[0, 5] = (changed[0, 5] + 1) % 29;

        using ModelOutput a = model.Run(new TokenBatch(ids), new OutputRequest(HiddenStates: true));
        using ModelOutput b = model.Run(new TokenBatch(changed), new OutputRequest(HiddenStates: true));

        (a.HiddenStates![^1][0, 0] - b.HiddenStates![^1][0, 0]).abs().max().item<float>().Should().BeGreaterThan(1e-4f);
    }

    [Theory]
    [InlineData(NormPlacement.Post)]
    [InlineData(NormPlacement.Pre)]
    public void The_padding_mask_really_masks_padded_tokens_change_nothing(NormPlacement placement)
    {
        using var scope = NewDisposeScope();
        BertModel model = TinyModels.BertModel(config: TinyModels.Bert(placement: placement));
        Tensor ids = TinyModels.Ids(4, 1, 5, 29);
        Tensor mask = tensor(new[] { true, true, true, true, true, false, false, false }, [1, 8]);
        Tensor padA = cat([ids, full([1, 3], 7L)], 1), padB = cat([ids, full([1, 3], 21L)], 1);

        using ModelOutput alone = model.Run(new TokenBatch(ids), OutputRequest.Everything);
        using ModelOutput a = model.Run(new TokenBatch(padA, mask), OutputRequest.Everything);
        using ModelOutput b = model.Run(new TokenBatch(padB, mask), OutputRequest.Everything);

        a.Logits.ShouldBeClose(alone.Logits, 1e-5);
        b.Logits.ShouldBeClose(alone.Logits, 1e-5);
        a.HiddenStates![^1][TensorIndex.Colon, TensorIndex.Slice(0, 5)].ShouldBeClose(alone.HiddenStates![^1], 1e-5);
        a.AttentionProbabilities![0][TensorIndex.Ellipsis, TensorIndex.Slice(5, 8)].abs().max().item<float>().Should().Be(0, "no query attends to a padded key");
    }

    [Fact]
    public void Requesting_maps_leaves_logits_unchanged_with_and_without_padding()
    {
        using var scope = NewDisposeScope();
        BertModel model = TinyModels.BertModel();
        Tensor ids = TinyModels.Ids(5, 2, 8, 29);
        Tensor mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 }, [2, 8]);

        foreach (Tensor? m in new[] { null, mask })
        {
            using ModelOutput fast = model.Run(new TokenBatch(ids, m), OutputRequest.LogitsOnly);
            using ModelOutput full = model.Run(new TokenBatch(ids, m), OutputRequest.Everything);
            full.Logits.ShouldBeClose(fast.Logits, 1e-5);
        }
    }

    [Fact]
    public void Removing_the_pooler_removes_its_parameters()
    {
        BertModel with = TinyModels.BertModel(config: TinyModels.Bert(pooler: true));
        BertModel without = TinyModels.BertModel(config: TinyModels.Bert(pooler: false));

        without.named_parameters().Select(p => p.name).Should().NotContain(n => n.StartsWith("pooler", StringComparison.Ordinal));
        (with.parameters().Sum(p => p.numel()) - without.parameters().Sum(p => p.numel())).Should().Be(16 * 16 + 16);
    }

    [Fact]
    public void Token_types_beyond_the_type_vocabulary_fail_clearly()
    {
        using var scope = NewDisposeScope();
        Action forward = () => TinyModels.BertModel().Run(new TokenBatch(zeros([1, 3], dtype: ScalarType.Int64), null, full([1, 3], 2L)), OutputRequest.LogitsOnly);

        forward.Should().Throw<ArgumentException>().WithMessage("TokenTypeIds must lie in [0, 2) (TypeVocabSize); found 2.*");
    }
}
