using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>The problems a cross-check against real PyTorch found in the checkpoint loaders, each pinned by a test.</summary>
public class CrossCheckFindingsTests
{
    private static Dictionary<string, Tensor> Weights(string fixture) =>
        Safetensors.LoadStateDict(Path.Combine(PretrainedFixtures.Folder(fixture), "model.safetensors"));

    private static BertConfig BertConfigOf(string fixture) => (BertConfig)PretrainedFolder.ReadConfig(PretrainedFixtures.Folder(fixture)).Config;

    [Theory]
    [InlineData("bert-encoder")]
    [InlineData("bert-pretraining")]
    public void Encoder_only_and_pretraining_checkpoints_load_into_a_classifier_with_the_new_head_reported(string fixture)
    {
        using var scope = NewDisposeScope();
        BertConfig config = BertConfigOf(fixture) with { Head = BertHead.SequenceClassification, NumLabels = 4, UsePooler = true };
        BertModel model = TinyModels.BertModel(config: config);

        WeightLoadReport report = PretrainedFolder.LoadWeights(model, Weights(fixture));

        report.Initialized.Should().Equal("classifier.weight", "classifier.bias");
        if (fixture == "bert-pretraining")
        {
            report.Unused.Should().Contain(["cls.seq_relationship.weight", "cls.predictions.bias"]);
        }
        // The encoder is the checkpoint's: its hidden states match what PyTorch computed.
        PretrainedFixtures.Expected expected = PretrainedFixtures.Read(fixture);
        using var noGrad = no_grad();
        ModelOutput output = model.Run(expected.Batch, new OutputRequest(HiddenStates: true));
        PretrainedFixtures.MaxAbs(output.HiddenStates![^1], expected.HiddenStates[^1]).Should().BeLessThan(1e-4);
    }

    [Fact]
    public void A_checkpoint_without_the_encoder_is_still_refused()
    {
        using var scope = NewDisposeScope();
        Dictionary<string, Tensor> weights = Weights("bert-classification");
        weights.Remove("bert.encoder.layer.1.output.dense.weight");
        BertModel model = TinyModels.BertModel(config: BertConfigOf("bert-classification"));

        ((Action)(() => PretrainedFolder.LoadWeights(model, weights))).Should().Throw<InvalidDataException>()
            .WithMessage("*missing bert.encoder.layer.1.output.dense.weight (for blocks.1.feed_forward.project.weight)*");
    }

    [Fact]
    public void A_layer_norm_epsilon_that_differs_from_config_json_is_refused_naming_both_values()
    {
        using var scope = NewDisposeScope();
        GptConfig config = (GptConfig)PretrainedFolder.ReadConfig(PretrainedFixtures.Folder("gpt2")).Config with { LayerNormEpsilon = 1e-12 };
        GptModel model = TinyModels.GptModel(config: config);
        Tensor before = model.state_dict()["final_norm.weight"].clone();

        ((Action)(() => PretrainedFolder.LoadWeights(model, PretrainedFixtures.Folder("gpt2")))).Should().Throw<InvalidDataException>()
            .WithMessage("*the layer norm ε is 1E-05 in config.json but LayerNormEpsilon is 1E-12 in the model*");
        model.state_dict()["final_norm.weight"].IsIdenticalTo(before).Should().BeTrue();
    }

    [Fact]
    public void Without_config_json_the_report_says_what_was_assumed()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        File.Copy(Path.Combine(PretrainedFixtures.Folder("gpt2"), "model.safetensors"), folder.PathOf("model.safetensors"));
        GptModel model = TinyModels.GptModel(config: (GptConfig)PretrainedFolder.ReadConfig(PretrainedFixtures.Folder("gpt2")).Config);

        WeightLoadReport report = PretrainedFolder.LoadWeights(model, folder.Path);

        report.Notes.Should().ContainSingle(n => n.StartsWith("no config.json beside the checkpoint: assumed", StringComparison.Ordinal) && n.Contains("LayerNormEpsilon = 1E-05"));
    }

    [Fact]
    public void An_own_lm_head_in_a_tied_configuration_is_refused_and_an_equal_one_is_accepted()
    {
        using var scope = NewDisposeScope();
        GptConfig config = (GptConfig)PretrainedFolder.ReadConfig(PretrainedFixtures.Folder("gpt2")).Config;
        Dictionary<string, Tensor> weights = Weights("gpt2");
        GptModel model = TinyModels.GptModel(config: config);
        Tensor before = model.state_dict()["token_embedding.weight"].clone();

        weights["lm_head.weight"] = weights["transformer.wte.weight"] + 0.5;
        ((Action)(() => PretrainedFolder.LoadWeights(model, weights))).Should().Throw<InvalidDataException>()
            .WithMessage("*has its own lm_head.weight, which differs from transformer.wte.weight (max |difference| 0.5), but the model ties them*");
        model.state_dict()["token_embedding.weight"].IsIdenticalTo(before).Should().BeTrue();

        weights["lm_head.weight"] = weights["transformer.wte.weight"].clone();
        PretrainedFolder.LoadWeights(model, weights).Ignored.Should().Contain("lm_head.weight");

        GptModel untied = TinyModels.GptModel(config: config with { TieEmbeddings = false });
        weights["lm_head.weight"] = weights["transformer.wte.weight"] + 0.5;
        PretrainedFolder.LoadWeights(untied, weights).Loaded.Should().Contain("lm_head.weight");
    }

    [Fact]
    public void The_Hugging_Face_convention_puts_the_final_norm_into_the_last_hidden_state()
    {
        using var scope = NewDisposeScope();
        PretrainedFixtures.Expected expected = PretrainedFixtures.Read("gpt2");
        GptModel ours = PretrainedFolder.Load<GptModel>(PretrainedFixtures.Folder("gpt2")).Model;
        GptModel hf = new(ours.Config with { HiddenStates = HiddenStateConvention.HuggingFace });
        hf.load_state_dict(ours.state_dict());
        hf.eval();
        using var noGrad = no_grad();

        Tensor blockOutput = ours.Run(expected.Batch, new OutputRequest(HiddenStates: true)).HiddenStates![^1];
        Tensor afterNorm = hf.Run(expected.Batch, new OutputRequest(HiddenStates: true)).HiddenStates![^1];

        PretrainedFixtures.MaxAbs(afterNorm, expected.HiddenStates[^1]).Should().BeLessThan(1e-4);
        PretrainedFixtures.MaxAbs(blockOutput, expected.HiddenStates[^1]).Should().BeGreaterThan(0.1, "the default keeps the block output");
    }
}
