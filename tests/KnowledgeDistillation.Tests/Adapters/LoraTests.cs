using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Remote.ServerFixtures;

namespace KnowledgeDistillation.Tests.Adapters;

[Collection(GlobalRngCollection.Name)]
public sealed class LoraTests
{
    private static GptModel Gpt(int seed, int layers = 2)
    {
        manual_seed(seed);
        var model = new GptModel(new GptConfig { VocabSize = Vocabulary, ContextLength = 16, Width = 16, Heads = 2, Layers = layers, Dropout = 0 });
        model.eval();
        return model;
    }

    private static Tensor Logits(GptModel model, Tensor ids)
    {
        using var noGrad = no_grad();
        return model.Run(new TokenBatch(ids), OutputRequest.LogitsOnly).Logits.detach().clone();
    }

    private static float MaxDifference(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    private static Tensor Ids(int seed = 9)
    {
        manual_seed(seed);
        return randint(0, Vocabulary, [3, Length]);
    }

    [Fact]
    public void A_fresh_adapter_changes_no_output_and_only_the_adapters_train()
    {
        GptModel model = Gpt(1);
        Tensor ids = Ids();
        Tensor before = Logits(model, ids);
        LoraAdapters adapters = Lora.Apply(model, new LoraOptions { Targets = [.. LoraTargets.For(model)], Rank = 4, Alpha = 8 });

        adapters.Layers.Select(l => l.Name).Should().Equal(
            "blocks.0.attention.qkv", "blocks.0.attention.output", "blocks.0.feed_forward.expand", "blocks.0.feed_forward.project",
            "blocks.1.attention.qkv", "blocks.1.attention.output", "blocks.1.feed_forward.expand", "blocks.1.feed_forward.project");
        Logits(model, ids).equal(before).all().item<bool>().Should().BeTrue("B starts at zero, so the update is exactly zero");
        // r · (in + out) per layer: qkv 16 → 48, output 16 → 16, expand 16 → 64, project 64 → 16.
        long expected = 2 * 4 * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16));
        adapters.TrainableParameters.Should().Be(expected);
        model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name)
            .Should().OnlyContain(n => n.EndsWith(".lora_A.weight") || n.EndsWith(".lora_B.weight"))
            .And.HaveCount(16);
        model.parameters().Where(p => p.requires_grad).Sum(p => p.numel()).Should().Be(expected);
    }

    [Fact]
    public void An_adapted_layer_computes_W_x_plus_b_plus_alpha_over_r_times_B_A_x()
    {
        GptModel model = Gpt(2, layers: 1);
        LoraAdapters adapters = Lora.Apply(model, new LoraOptions { Targets = ["attention.qkv"], Rank = 3, Alpha = 6 });
        LoraLayer layer = adapters.Layers.Single();
        using (no_grad())
        {
            manual_seed(4);
            layer.B.weight!.copy_(randn(48, 3));
        }
        manual_seed(5);
        Tensor x = randn(2, 16);
        float[] y = layer.Target.call(x).data<float>().ToArray();

        // The formula in double precision from the tensors' values: scaling α / r = 2.
        float[] w = layer.Target.weight!.data<float>().ToArray(), b = layer.Target.bias!.data<float>().ToArray();
        float[] a = layer.A.weight!.data<float>().ToArray(), bb = layer.B.weight!.data<float>().ToArray(), xs = x.data<float>().ToArray();
        for (int n = 0; n < 2; n++)
        {
            for (int i = 0; i < 48; i++)
            {
                double expected = b[i];
                for (int j = 0; j < 16; j++) expected += (double)w[i * 16 + j] * xs[n * 16 + j];
                for (int k = 0; k < 3; k++)
                {
                    double ax = 0;
                    for (int j = 0; j < 16; j++) ax += (double)a[k * 16 + j] * xs[n * 16 + j];
                    expected += 2.0 * bb[i * 3 + k] * ax;
                }
                y[n * 48 + i].Should().BeApproximately((float)expected, 1e-5f);
            }
        }
    }

    [Fact]
    public void Distilling_moves_only_the_adapters_and_merging_keeps_the_outputs()
    {
        GptModel teacher = Teacher(3), student = Gpt(5);
        Dictionary<string, float[]> baseWeights = student.named_parameters().ToDictionary(p => p.name, p => p.parameter.data<float>().ToArray());
        LoraAdapters adapters = Lora.Apply(student, new LoraOptions { Targets = [.. LoraTargets.GptBertAll], Rank = 4, Alpha = 8 });
        DistillationObjective objective = DistillationObjective.Create().SoftTargets(0.8, temperature: 2.0).HardTargets(0.2).Build();
        new DistillationTrainer<TokenBatch>(teacher, student, objective, Training.TrainingFixtures.Options(6)).Train(Batches(3));

        foreach ((string name, Parameter p) in student.named_parameters())
        {
            if (name.Contains(".lora_")) continue;
            p.data<float>().ToArray().Should().Equal(baseWeights[name], $"{name} is frozen");
        }
        adapters.Layers.Should().OnlyContain(l => l.B.weight!.abs().sum().item<float>() > 0, "every adapter learned");

        student.eval();
        Tensor ids = Ids();
        Tensor adapted = Logits(student, ids);
        MaxDifference(adapted, Logits(Gpt(5), ids)).Should().BeGreaterThan(1e-3f, "the adapters changed the model");
        adapters.Merge();
        adapters.IsMerged.Should().BeTrue();
        MaxDifference(Logits(student, ids), adapted).Should().BeLessThan(1e-5f);
        ((Action)adapters.Merge).Should().Throw<InvalidOperationException>().WithMessage("The LoRA adapter of blocks.0.attention.qkv is already merged; merging again would add its update twice.");
        adapters.Unmerge();
        MaxDifference(Logits(student, ids), adapted).Should().BeLessThan(1e-5f);
        foreach ((string name, Parameter p) in student.named_parameters().Where(p => !p.name.Contains(".lora_")))
        {
            float[] now = p.data<float>().ToArray();
            now.Zip(baseWeights[name]).Max(v => Math.Abs(v.First - v.Second)).Should().BeLessThan(1e-6f, $"unmerging gives {name} back");
        }
        ((Action)adapters.Unmerge).Should().Throw<InvalidOperationException>().WithMessage("*is not merged; there is nothing to unmerge.");
    }

    [Fact]
    public void An_adapted_model_saves_merged_and_its_base_folder_loads_under_the_adapters()
    {
        GptModel model = Gpt(6);
        LoraAdapters adapters = Lora.Apply(model, new LoraOptions { Targets = [.. LoraTargets.GptBertAttention], Rank = 2, Alpha = 4 });
        using (no_grad())
        {
            manual_seed(7);
            foreach (LoraLayer layer in adapters.Layers) layer.B.weight!.copy_(randn_like(layer.B.weight!) * 0.1);
        }
        Tensor ids = Ids();
        Tensor adapted = Logits(model, ids);
        using var folder = new TemporaryFolder();
        PretrainedFolder.Save(model, folder.PathOf("merged"));
        adapters.IsMerged.Should().BeFalse("saving merges a copy, not the model");

        GptModel plain = PretrainedFolder.Load<GptModel>(folder.PathOf("merged")).Model;
        plain.eval();
        MaxDifference(Logits(plain, ids), adapted).Should().BeLessThan(1e-5f);
        plain.state_dict().Keys.Should().NotContain(k => k.Contains("lora"));

        // The base model's own folder loads under the adapters, which keep their values.
        PretrainedFolder.Save(Gpt(6), folder.PathOf("base"));
        PretrainedFolder.LoadWeights(model, folder.PathOf("base"));
        MaxDifference(Logits(model, ids), adapted).Should().BeLessThan(1e-6f);
        adapters.Merge();
        ((Action)(() => PretrainedFolder.LoadWeights(model, folder.PathOf("base")))).Should().Throw<InvalidOperationException>().WithMessage("*merged into its weight; unmerge the adapters before loading*");
    }

    [Fact]
    public void Patterns_ranks_and_repeats_that_cannot_work_are_refused_and_leave_the_model_as_it_was()
    {
        GptModel model = Gpt(8);
        void Refused(LoraOptions options, string message)
        {
            ((Action)(() => Lora.Apply(model, options))).Should().Throw<ArgumentException>().WithMessage(message);
            model.parameters().Should().OnlyContain(p => p.requires_grad, "a refused Apply freezes nothing");
            Lora.LayersOf(model).Should().BeEmpty();
        }
        Refused(new LoraOptions { Targets = ["attention.q_proj"] },
            "Targets pattern \"attention.q_proj\" matches no Linear layer of GptModel: it names no module. Its Linear layers: blocks.0.attention.qkv, blocks.0.attention.output, blocks.0.feed_forward.expand, *");
        Refused(new LoraOptions { Targets = ["attention.qkv", "attention"] },
            "Targets pattern \"attention\" matches no Linear layer of GptModel: it names blocks.0.attention (SelfAttention), blocks.1.attention (SelfAttention), which are not Linear layers.*");
        Refused(new LoraOptions { Targets = ["attention.output"], Rank = 0 }, "Rank must be at least 1; got 0.*");
        Refused(new LoraOptions { Targets = ["attention.output"], Rank = 17 },
            "Rank must be at most min(in, out) of every adapted layer; blocks.0.attention.output is 16 → 16, so at most 16; got 17.*");
        Refused(new LoraOptions { Targets = [] }, "Targets must list module names to adapt*");
        Refused(new LoraOptions { Targets = ["attention.output"], Dropout = 1 }, "Dropout must be 0 ≤ p < 1; got 1.*");

        Lora.Apply(model, new LoraOptions { Targets = ["attention.output"], Rank = 2 });
        ((Action)(() => Lora.Apply(model, new LoraOptions { Targets = ["attention.output"], Rank = 2 }))).Should().Throw<ArgumentException>()
            .WithMessage("blocks.0.attention.output already has a LoRA adapter; apply LoRA once per layer.*");
        ((Action)(() => LoraTargets.For(nn.Linear(2, 2)))).Should().Throw<ArgumentException>().WithMessage("No LoRA preset for Linear*");
    }

    private sealed class DirectForward : nn.Module<Tensor, Tensor>
    {
        private readonly Linear inner;
        private readonly bool _direct;

        public DirectForward(bool direct) : base(nameof(DirectForward))
        {
            inner = nn.Linear(4, 4);
            _direct = direct;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => _direct ? inner.forward(x) : inner.call(x);
    }

    [Fact]
    public void A_module_that_calls_forward_directly_is_detected_as_bypassing_its_adapter()
    {
        foreach (bool direct in new[] { true, false })
        {
            var module = new DirectForward(direct);
            LoraAdapters adapters = Lora.Apply(module, new LoraOptions { Targets = ["inner"], Rank = 2 });
            adapters.Applied(() => module.call(ones(1, 4))).Should().Be(!direct);
        }
    }

    [Fact]
    public void The_presets_match_every_projection_of_the_llama_and_bert_models()
    {
        manual_seed(1);
        var llama = new LlamaModel(new LlamaConfig { VocabSize = 40, ContextLength = 16, Width = 16, Heads = 4, KeyValueHeads = 2, Layers = 1, FeedForwardWidth = 32 });
        LoraAdapters onLlama = Lora.Apply(llama, new LoraOptions { Targets = [.. LoraTargets.For(llama)], Rank = 2 });
        onLlama.Layers.Select(l => l.Name.Split('.')[^1]).Should().Equal("query", "key", "value", "output", "gate", "up", "down");
        onLlama.Applied(() => llama.Run(new TokenBatch(ones(1, 4, ScalarType.Int64)), OutputRequest.LogitsOnly)).Should().BeTrue();

        var bert = new BertModel(new BertConfig { VocabSize = 40, ContextLength = 16, Width = 16, Heads = 2, Layers = 1, Head = BertHead.None, UsePooler = false, Dropout = 0 });
        LoraAdapters onBert = Lora.Apply(bert, new LoraOptions { Targets = [.. LoraTargets.For(bert, feedForward: false)], Rank = 2 });
        onBert.Layers.Should().HaveCount(2);
        onBert.Applied(() => bert.Run(new TokenBatch(ones(1, 4, ScalarType.Int64)), OutputRequest.LogitsOnly)).Should().BeTrue();
    }
}
