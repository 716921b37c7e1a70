using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Transformers;

/// <summary>Small seeded models and inputs for the transformer tests.</summary>
internal static class TinyModels
{
    public static GptConfig Gpt(bool tie = true, NormPlacement placement = NormPlacement.Pre) =>
        new() { VocabSize = 37, ContextLength = 16, Width = 24, Heads = 3, Layers = 2, FeedForwardWidth = 40, Dropout = 0, TieEmbeddings = tie, NormPlacement = placement };

    public static BertConfig Bert(bool pooler = true, NormPlacement placement = NormPlacement.Post) =>
        new() { VocabSize = 29, ContextLength = 12, Width = 16, Heads = 4, Layers = 3, Dropout = 0, NumLabels = 3, UsePooler = pooler, NormPlacement = placement };

    public static GptModel GptModel(int seed = 1, GptConfig? config = null)
    {
        manual_seed(seed);
        var model = new GptModel(config ?? Gpt());
        model.eval();
        return model;
    }

    public static BertModel BertModel(int seed = 1, BertConfig? config = null)
    {
        manual_seed(seed);
        var model = new BertModel(config ?? Bert());
        model.eval();
        return model;
    }

    public static Tensor Ids(int seed, long batch, long length, int vocab)
    {
        manual_seed(seed);
        return randint(0, vocab, [batch, length]);
    }

    /// <summary>Same shape and bit-for-bit the same values.</summary>
    public static bool IsIdenticalTo(this Tensor actual, Tensor expected) =>
        actual.shape.SequenceEqual(expected.shape) && actual.eq(expected).all().item<bool>();

    public static void ShouldBeClose(this Tensor actual, Tensor expected, double tolerance = 1e-5)
    {
        actual.shape.Should().Equal(expected.shape);
        double difference = (actual - expected).abs().max().item<float>();
        difference.Should().BeLessThanOrEqualTo(tolerance);
    }
}
