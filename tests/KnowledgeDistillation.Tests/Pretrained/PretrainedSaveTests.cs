using KnowledgeDistillation.Formats;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>
/// PretrainedFolder.Save writes Hugging Face names, layouts and file conventions. (That transformers-style code loads the
/// result and computes the same outputs is checked against real PyTorch by .ci/run's reverse cross-check.)
/// </summary>
public class PretrainedSaveTests
{
    [Theory]
    [InlineData("gpt2")]
    [InlineData("bert-classification")]
    [InlineData("bert-masked-lm")]
    [InlineData("bert-encoder")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("mistral")]
    public void A_saved_fixture_holds_exactly_the_tensors_and_config_of_the_original(string fixture)
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        string source = PretrainedFixtures.Folder(fixture);
        IModuleModel<TokenBatch> model = PretrainedFolder.Load(source).Model;

        PretrainedFolder.Save(model, folder.Path, new PretrainedSaveOptions { CopyTokenizerFrom = source });

        // Independent of our mapping: the saved names and values are those the Python side wrote, bit for bit.
        Dictionary<string, Tensor> original = Safetensors.LoadStateDict(Path.Combine(source, "model.safetensors"));
        Dictionary<string, Tensor> saved = Safetensors.LoadStateDict(folder.PathOf("model.safetensors"));
        var expectedNames = original.Keys.Where(k => !(fixture == "bert-encoder" && k.StartsWith("pooler.", StringComparison.Ordinal))).Order();
        saved.Keys.Order().Should().Equal(expectedNames);
        foreach ((string name, Tensor value) in saved) value.IsIdenticalTo(original[name]).Should().BeTrue(name);

        JsonObject want = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!;
        JsonObject got = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.PathOf("config.json")))!;
        foreach ((string key, JsonNode? value) in want)
        {
            if (value is JsonValue number && number.TryGetValue(out double expected))
            {
                got[key]!.GetValue<double>().Should().Be(expected, key);
            }
            else
            {
                JsonNode.DeepEquals(got[key], value).Should().BeTrue($"{key}: saved {got[key]?.ToJsonString()}, original {value?.ToJsonString()}");
            }
        }
        SafetensorsFile.ReadHeader(folder.PathOf("model.safetensors")).Metadata.Should().Equal(new Dictionary<string, string> { ["format"] = "pt" });
    }

    [Fact]
    public void A_student_with_fewer_layers_saves_and_loads_back_with_identical_outputs()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        LlamaModel teacher = PretrainedFolder.Load<LlamaModel>(PretrainedFixtures.Folder("llama")).Model;
        LlamaModel student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 1, KeyValueHeads = 1 }).Model;
        student.eval();
        Tensor ids = TinyModels.Ids(3, 2, 9, student.Config.VocabSize);

        PretrainedFolder.Save(student, folder.Path);
        LlamaModel back = PretrainedFolder.Load<LlamaModel>(folder.Path).Model;

        back.Config.Layers.Should().Be(1);
        back.Config.EffectiveKeyValueHeads.Should().Be(1);
        using var noGrad = no_grad();
        back.forward(ids).IsIdenticalTo(student.forward(ids)).Should().BeTrue();
    }

    [Fact]
    public void Tied_embeddings_are_written_once_and_sharding_splits_by_size_with_an_index()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        GptModel model = PretrainedFolder.Load<GptModel>(PretrainedFixtures.Folder("gpt2")).Model;

        PretrainedFolder.Save(model, folder.Path, new PretrainedSaveOptions { MaxShardBytes = 100_000 });

        ShardIndex index = ShardIndex.Read(folder.PathOf("model.safetensors.index.json"));
        string[] shards = index.WeightMap.Values.Distinct().Order().ToArray();
        shards.Length.Should().BeGreaterThan(1);
        shards[0].Should().Be($"model-00001-of-{shards.Length:D5}.safetensors");
        index.WeightMap.Keys.Should().NotContain("lm_head.weight").And.Contain("transformer.wte.weight");
        index.TotalSize.Should().Be(model.parameters().Sum(p => p.numel()) * 4);
        foreach (string shard in shards)
        {
            SafetensorsHeader header = SafetensorsFile.ReadHeader(folder.PathOf(shard));
            long bytes = header.Entries.Values.Sum(e => e.End - e.Begin);
            (bytes <= 100_000 || header.Entries.Count == 1).Should().BeTrue($"{shard} holds {bytes} bytes");
        }
        File.Exists(folder.PathOf("model.safetensors")).Should().BeFalse();
        GptModel back = PretrainedFolder.Load<GptModel>(folder.Path).Model;
        using var noGrad = no_grad();
        Tensor ids = TinyModels.Ids(4, 1, 6, 256);
        back.forward(ids).IsIdenticalTo(model.forward(ids)).Should().BeTrue();
    }

    [Fact]
    public void Saving_again_replaces_old_shards_and_keeps_other_files_and_copies_the_teachers_tokenizer()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        using var teacherFolder = new TemporaryFolder();
        foreach (string file in Directory.GetFiles(PretrainedFixtures.Folder("gpt2"))) File.Copy(file, teacherFolder.PathOf(Path.GetFileName(file)));
        File.WriteAllText(teacherFolder.PathOf("vocab.json"), "{\"a\": 0}");
        GptModel model = PretrainedFolder.Load<GptModel>(teacherFolder.Path).Model;
        PretrainedFolder.Save(model, folder.Path, new PretrainedSaveOptions { MaxShardBytes = 100_000 });
        File.WriteAllText(folder.PathOf("README.md"), "mine");

        PretrainedFolder.Save(model, folder.Path, new PretrainedSaveOptions { CopyTokenizerFrom = teacherFolder.Path });

        Directory.GetFiles(folder.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal)
            .Should().Equal("README.md", "config.json", "model.safetensors", "vocab.json");
        JsonNode config = JsonNode.Parse(File.ReadAllText(folder.PathOf("config.json")))!;
        config["bos_token_id"]!.GetValue<int>().Should().Be(0, "the teacher's token ids are kept");
    }

    [Fact]
    public void A_shallower_student_keeps_the_teachers_token_ids_and_labels_but_none_of_its_shape_fields()
    {
        using var scope = NewDisposeScope();
        using var teacherFolder = new TemporaryFolder();
        using var folder = new TemporaryFolder();
        foreach (string file in Directory.GetFiles(PretrainedFixtures.Folder("qwen2"))) File.Copy(file, teacherFolder.PathOf(Path.GetFileName(file)));
        var teacherConfig = (JsonObject)JsonNode.Parse(File.ReadAllText(teacherFolder.PathOf("config.json")))!;
        // Fields of recent transformers' Qwen2/Qwen3 configs that describe the teacher's depth and precision.
        teacherConfig["layer_types"] = new JsonArray("full_attention", "full_attention");
        teacherConfig["max_window_layers"] = 2;
        teacherConfig["dtype"] = "bfloat16";
        teacherConfig["id2label"] = new JsonObject { ["0"] = "no", ["1"] = "yes" };
        File.WriteAllText(teacherFolder.PathOf("config.json"), teacherConfig.ToJsonString());
        LlamaModel teacher = PretrainedFolder.Load<LlamaModel>(teacherFolder.Path).Model;
        LlamaModel student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 1 }).Model;

        PretrainedFolder.Save(student, folder.Path, new PretrainedSaveOptions { CopyTokenizerFrom = teacherFolder.Path });
        PretrainedFolder.Save(teacher, folder.PathOf("teacher"), new PretrainedSaveOptions { CopyTokenizerFrom = teacherFolder.Path });

        var saved = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.PathOf("config.json")))!;
        saved.ContainsKey("layer_types").Should().BeFalse("the teacher's two layer types would not fit a one-layer student");
        saved.ContainsKey("max_window_layers").Should().BeFalse();
        saved["dtype"]!.GetValue<string>().Should().Be("float32", "the student was saved in float32");
        saved["num_hidden_layers"]!.GetValue<int>().Should().Be(1);
        saved["eos_token_id"]!.ToJsonString().Should().Be(teacherConfig["eos_token_id"]!.ToJsonString());
        JsonNode.DeepEquals(saved["id2label"], teacherConfig["id2label"]).Should().BeTrue("the task's labels carry over");
        var resaved = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.PathOf("teacher/config.json")))!;
        resaved["layer_types"]!.AsArray().Should().HaveCount(2, "the teacher saved with its own config keeps every field, for it describes that very shape");
    }

    [Fact]
    public void A_masked_LM_BERT_with_a_pooler_saves_no_pooler_weights_as_BertForMaskedLM_has_none()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        BertModel model = TinyModels.BertModel(config: TinyModels.Bert(pooler: true) with { Head = BertHead.MaskedLM });

        PretrainedFolder.Save(model, folder.Path);

        SafetensorsFile.ReadHeader(folder.PathOf("model.safetensors")).Entries.Keys.Should().NotContain(k => k.Contains("pooler"));
        JsonNode.Parse(File.ReadAllText(folder.PathOf("config.json")))!["architectures"]![0]!.GetValue<string>().Should().Be("BertForMaskedLM");
        BertModel back = PretrainedFolder.Load<BertModel>(folder.Path).Model;
        using var noGrad = no_grad();
        Tensor ids = TinyModels.Ids(5, 2, 6, model.Config.VocabSize);
        back.forward(ids).IsIdenticalTo(model.forward(ids)).Should().BeTrue("the masked-LM head never reads the pooler");
    }

    [Fact]
    public void Bfloat16_saving_says_so_in_the_config_and_loads_back_within_bfloat16_rounding()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        LlamaModel model = PretrainedFolder.Load<LlamaModel>(PretrainedFixtures.Folder("llama")).Model;

        PretrainedFolder.Save(model, folder.Path, new PretrainedSaveOptions { Dtype = ScalarType.BFloat16 });

        JsonNode.Parse(File.ReadAllText(folder.PathOf("config.json")))!["torch_dtype"]!.GetValue<string>().Should().Be("bfloat16");
        SafetensorsFile.ReadHeader(folder.PathOf("model.safetensors")).Entries.Values.Select(e => e.DType).Distinct().Should().Equal("BF16");
        PretrainedModel<LlamaModel> back = PretrainedFolder.Load<LlamaModel>(folder.Path);
        back.Report.Notes.Should().Contain(n => n.Contains("BFloat16"));
        // The fixture's weights are bfloat16 values, so nothing is lost.
        foreach ((string name, Tensor value) in back.Model.state_dict()) value.IsIdenticalTo(model.state_dict()[name]).Should().BeTrue(name);
    }

    [Fact]
    public void A_model_without_a_Hugging_Face_equivalent_is_refused_before_anything_is_written()
    {
        using var folder = new TemporaryFolder();
        using var scope = NewDisposeScope();
        BertModel noPooler = TinyModels.BertModel(config: TinyModels.Bert(pooler: false));
        LlamaModel llamaWithQkvBias = new(new LlamaConfig { VocabSize = 20, Width = 16, Heads = 2, Layers = 1, QueryKeyValueBias = true });

        ((Action)(() => PretrainedFolder.Save(noPooler, folder.PathOf("a")))).Should().Throw<NotSupportedException>()
            .WithMessage("The model cannot be saved as BertForSequenceClassification: UsePooler = false*Nothing was written.");
        ((Action)(() => PretrainedFolder.Save(llamaWithQkvBias, folder.PathOf("b")))).Should().Throw<NotSupportedException>()
            .WithMessage("*LlamaForCausalLM: QueryKeyValueBias without OutputBias*DecoderFamily.Qwen2*");
        Directory.Exists(folder.PathOf("a")).Should().BeFalse();
        Directory.Exists(folder.PathOf("b")).Should().BeFalse();
    }
}
