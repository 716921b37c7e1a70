using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>
/// <see cref="OnnxImport.Gpt"/> and <see cref="OnnxImport.Llama"/> read back the library's own decoder exports: the configuration from the graph and every
/// parameter, so the imported model computes what the exported one did (checked on logits, not on the code's own
/// bookkeeping): tied and untied heads, GELU forms, pre- and post-norm; grouped-query attention, sliding windows,
/// q/k/v biases and rotary bases.
/// </summary>
public class DecoderImportTests(RealTextEncoders encoders) : IClassFixture<RealTextEncoders>
{
    public static TheoryData<bool, FeedForwardActivation, NormPlacement> Variants => new()
    {
        { true, FeedForwardActivation.GeluTanh, NormPlacement.Pre },
        { false, FeedForwardActivation.Gelu, NormPlacement.Pre },
        { true, FeedForwardActivation.Gelu, NormPlacement.Post },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void An_exported_GptModel_comes_back_with_its_configuration_and_computes_the_same_logits(bool tied, FeedForwardActivation activation, NormPlacement placement)
    {
        manual_seed(31);
        using var original = new GptModel(new GptConfig
        {
            VocabSize = 41, ContextLength = 12, Width = 24, Heads = 3, Layers = 2, FeedForwardWidth = 40, TieEmbeddings = tied,
            Activation = activation, NormPlacement = placement, LayerNormEpsilon = 1e-6,
        });
        original.eval();
        string path = Path.Combine(Path.GetTempPath(), $"kd-gpt-import-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(original, path);
            OnnxImportedModel<GptModel> imported = OnnxImport.Gpt(path);
            using GptModel model = imported.Model;
            GptConfig c = model.Config;
            (c.VocabSize, c.ContextLength, c.Width, c.Heads, c.Layers, c.FeedForwardWidth).Should().Be((41, 12, 24, 3, 2, 40));
            (c.TieEmbeddings, c.Activation, c.NormPlacement, c.LayerNormEpsilon).Should().Be((tied, activation, placement, 1e-6));
            imported.Report.Unused.Should().BeEmpty();
            imported.Report.Loaded.Should().BeEquivalentTo(original.state_dict().Keys);
            model.training.Should().BeFalse();

            using var scope = NewDisposeScope();
            Tensor ids = randint(0, 41, [3, 12], dtype: ScalarType.Int64);
            using var noGrad = no_grad();
            (model.call(ids) - original.call(ids)).abs().max().item<float>().Should().Be(0f, "the same weights in the same modules give the same numbers");
        }
        finally
        {
            File.Delete(path);
        }
    }

    public static TheoryData<int, int?, bool, bool, double> LlamaVariants => new()
    {
        // key/value heads, sliding window, q/k/v bias (Qwen2), tied head, rotary base
        { 2, null, false, false, 10_000 },
        { 4, null, true, true, 1_000_000 },
        { 1, 5, false, false, 500 },
    };

    [Theory]
    [MemberData(nameof(LlamaVariants))]
    public void An_exported_LlamaModel_comes_back_with_its_configuration_and_computes_the_same_logits(int keyValueHeads, int? window, bool qkvBias, bool tied, double theta)
    {
        manual_seed(32);
        using var original = new LlamaModel(new LlamaConfig
        {
            VocabSize = 43, ContextLength = 16, Width = 32, Heads = 4, KeyValueHeads = keyValueHeads, HeadWidth = 12, Layers = 2, FeedForwardWidth = 48,
            SlidingWindow = window, QueryKeyValueBias = qkvBias, TieEmbeddings = tied, RopeTheta = theta, LayerNormEpsilon = 1e-5,
        });
        original.eval();
        string path = Path.Combine(Path.GetTempPath(), $"kd-llama-import-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(original, path);
            OnnxImportedModel<LlamaModel> imported = OnnxImport.Llama(path);
            using LlamaModel model = imported.Model;
            LlamaConfig c = model.Config;
            (c.VocabSize, c.ContextLength, c.Width, c.Heads, c.KeyValueHeads, c.HeadWidth, c.Layers, c.FeedForwardWidth).Should().Be((43, 16, 32, 4, keyValueHeads, 12, 2, 48));
            (c.SlidingWindow, c.QueryKeyValueBias, c.TieEmbeddings, c.RopeTheta, c.LayerNormEpsilon).Should().Be((window, qkvBias, tied, theta, 1e-5));
            imported.Report.Unused.Should().BeEmpty();
            imported.Report.Loaded.Should().BeEquivalentTo(original.state_dict().Keys);

            using var scope = NewDisposeScope();
            Tensor ids = randint(0, 43, [2, 16], dtype: ScalarType.Int64);
            using var noGrad = no_grad();
            (model.call(ids) - original.call(ids)).abs().max().item<float>().Should().Be(0f, "the same weights and configuration give the same numbers");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_BERT_export_is_not_taken_for_a_GPT_and_the_message_says_where_it_belongs()
    {
        Action act = () => OnnxImport.Gpt(Path.Combine(encoders.MiniLM, "model.onnx"));
        act.Should().Throw<InvalidDataException>().WithMessage("*not a GptModel exported by this library*embeddings.LayerNorm.bias*OnnxImport.Bert*");
    }
}
