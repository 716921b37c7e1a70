using System.Text.Json.Nodes;
using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Formats;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Adapters;

[Collection(GlobalRngCollection.Name)]
public sealed class PeftAdapterFolderTests
{
    private static BertModel Bert(int seed)
    {
        manual_seed(seed);
        var model = new BertModel(new BertConfig { VocabSize = 30, ContextLength = 16, Width = 8, Heads = 2, Layers = 2, Head = BertHead.None, UsePooler = false, Dropout = 0 });
        model.eval();
        return model;
    }

    private static GptModel Gpt(int seed)
    {
        manual_seed(seed);
        var model = new GptModel(new GptConfig { VocabSize = 30, ContextLength = 16, Width = 8, Heads = 2, Layers = 2, Dropout = 0 });
        model.eval();
        return model;
    }

    private static LlamaModel Llama(int seed)
    {
        manual_seed(seed);
        var model = new LlamaModel(new LlamaConfig { VocabSize = 30, ContextLength = 16, Width = 8, Heads = 2, KeyValueHeads = 1, Layers = 1, FeedForwardWidth = 16 });
        model.eval();
        return model;
    }

    private static Tensor Out(IModuleModel<TokenBatch> model)
    {
        using var noGrad = no_grad();
        manual_seed(3);
        return model.Run(new TokenBatch(randint(0, 30, [2, 6])), OutputRequest.LogitsOnly).Logits.detach().clone();
    }

    private static void Randomize(LoraAdapters adapters)
    {
        using var noGrad = no_grad();
        manual_seed(11);
        foreach (LoraLayer layer in adapters.Layers) layer.B.weight!.copy_(randn_like(layer.B.weight!) * 0.3);
    }

    public static TheoryData<string> Families() => ["gpt2", "bert", "llama"];

    [Theory]
    [MemberData(nameof(Families))]
    public void A_saved_adapter_folder_loads_into_the_base_model_and_computes_what_the_adapted_model_does(string family)
    {
        Func<int, IModuleModel<TokenBatch>> make = family switch { "gpt2" => s => Gpt(s), "bert" => s => Bert(s), _ => s => Llama(s) };
        IModuleModel<TokenBatch> adapted = make(1);
        LoraAdapters adapters = Lora.Apply(adapted.Module, new LoraOptions { Targets = [.. LoraTargets.For(adapted.Module)], Rank = 2, Alpha = 6, RankStabilized = family == "llama" });
        Randomize(adapters);
        Tensor expected = Out(adapted);
        using var folder = new TemporaryFolder();
        PeftAdapterFolder.Save(adapted.Module, folder.PathOf("adapter"), baseModelNameOrPath: "base");

        JsonObject config = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.PathOf("adapter/adapter_config.json")))!;
        config["peft_type"]!.GetValue<string>().Should().Be("LORA");
        config["r"]!.GetValue<int>().Should().Be(2);
        config["fan_in_fan_out"]!.GetValue<bool>().Should().Be(family == "gpt2", "GPT-2's projections are Conv1D, stored [in, out]");
        // rsLoRA's α / √r = 6 / √2 is written as lora_alpha = scale × r, so PEFT's α / r gives the same scale.
        config["lora_alpha"]!.GetValue<double>().Should().BeApproximately(family == "llama" ? 6 / Math.Sqrt(2) * 2 : 6, 1e-12);
        string[] keys = [.. SafetensorsFile.ReadHeader(folder.PathOf("adapter/adapter_model.safetensors")).Entries.Keys];
        string expectedFirst = family switch
        {
            "gpt2" => "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
            "bert" => "base_model.model.encoder.layer.0.attention.self.query.lora_A.weight", // a bare BertModel: no "bert." prefix
            _ => "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        };
        keys.Should().Contain(expectedFirst);

        IModuleModel<TokenBatch> loaded = make(1);
        LoraAdapters read = PeftAdapterFolder.Load(loaded.Module, folder.PathOf("adapter"));
        read.Layers.Should().HaveCount(adapters.Layers.Count);
        (Out(loaded) - expected).abs().max().item<float>().Should().BeLessThan(1e-6f);
        loaded.Module.parameters().Where(p => p.requires_grad).Sum(p => p.numel()).Should().Be(read.TrainableParameters);
    }

    [Fact]
    public void A_PEFT_adapter_on_only_query_and_value_of_BERT_becomes_an_exact_block_of_the_fused_layer()
    {
        // Written as PEFT writes BERT's default targets (query and value), r = 2, α = 4: scale 2.
        BertModel model = Bert(2);
        manual_seed(5);
        Tensor aq = randn(2, 8), bq = randn(8, 2), av = randn(2, 8), bv = randn(8, 2);
        using var folder = new TemporaryFolder();
        Directory.CreateDirectory(folder.PathOf("peft"));
        SafetensorsFile.Write(folder.PathOf("peft/adapter_model.safetensors"), new Dictionary<string, Tensor>
        {
            ["base_model.model.bert.encoder.layer.1.attention.self.query.lora_A.weight"] = aq,
            ["base_model.model.bert.encoder.layer.1.attention.self.query.lora_B.weight"] = bq,
            ["base_model.model.bert.encoder.layer.1.attention.self.value.lora_A.weight"] = av,
            ["base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"] = bv,
        });
        File.WriteAllText(folder.PathOf("peft/adapter_config.json"), """{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query", "value"], "bias": "none"}""");

        Tensor qkv = model.state_dict()["blocks.1.attention.qkv.weight"].detach().clone();
        LoraAdapters adapters = PeftAdapterFolder.Load(model, folder.PathOf("peft"));
        LoraLayer layer = adapters.Layers.Single();
        layer.Name.Should().Be("blocks.1.attention.qkv");
        layer.Rank.Should().Be(6, "three parts of rank 2, the key's block zero");
        // The merged weight must be W + 2 · [Bq Aq; 0; Bv Av], computed here independently.
        Tensor expected = qkv.clone();
        expected[..8] += 2 * bq.matmul(aq);
        expected[16..] += 2 * bv.matmul(av);
        (layer.MergedWeight() - expected).abs().max().item<float>().Should().BeLessThan(1e-6f);
    }

    [Fact]
    public void An_adapter_folder_for_another_base_model_or_with_settings_not_applied_is_refused_by_name()
    {
        using var folder = new TemporaryFolder();
        GptModel gpt = Gpt(1);
        Randomize(Lora.Apply(gpt, new LoraOptions { Targets = [.. LoraTargets.GptBertAttention], Rank = 2 }));
        PeftAdapterFolder.Save(gpt, folder.PathOf("gpt"));

        LlamaModel llama = Llama(1);
        ((Action)(() => PeftAdapterFolder.Load(llama, folder.PathOf("gpt")))).Should().Throw<ArgumentException>()
            .WithMessage("*adapts h.0.attn.c_attn, h.0.attn.c_proj, h.1.attn.c_attn and 1 more, which the LlamaModel does not have: it is an adapter for another base model.*");
        llama.parameters().Should().OnlyContain(p => p.requires_grad, "a refused load changes nothing");

        GptModel wider;
        manual_seed(1);
        wider = new GptModel(new GptConfig { VocabSize = 30, ContextLength = 16, Width = 12, Heads = 2, Layers = 2, Dropout = 0 });
        ((Action)(() => PeftAdapterFolder.Load(wider, folder.PathOf("gpt")))).Should().Throw<ArgumentException>()
            .WithMessage("*the adapter of h.0.attn.c_attn is A [2, 8], B [24, 2]; the model's blocks.0.attention.qkv needs A [2, 12] and B [36, 2]*another base model*");

        JsonObject config = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.PathOf("gpt/adapter_config.json")))!;
        config["use_dora"] = true;
        File.WriteAllText(folder.PathOf("gpt/adapter_config.json"), config.ToJsonString());
        ((Action)(() => PeftAdapterFolder.Load(Gpt(1), folder.PathOf("gpt")))).Should().Throw<InvalidDataException>().WithMessage("*use_dora = true asks for DoRA*");

        ((Action)(() => PeftAdapterFolder.Save(Gpt(2), folder.PathOf("none")))).Should().Throw<ArgumentException>().WithMessage("The GptModel has no LoRA adapters to save*");
        ((Action)(() => PeftAdapterFolder.Load(gpt, folder.PathOf("missing")))).Should().Throw<FileNotFoundException>().WithMessage("*has no adapter_config.json; it is not a PEFT adapter folder.");
    }
}
