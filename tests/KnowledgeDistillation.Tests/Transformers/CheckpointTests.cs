using KnowledgeDistillation.Formats;
using System.IO.Compression;
using System.Text;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using KnowledgeDistillation.Pretrained;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Transformers;

/// <summary>
/// Checkpoints with Hugging Face names, written by the test with known values (no download is possible here), and
/// TorchSharp's own format. The expected name mapping is spelled out independently of the library's table.
/// </summary>
public class CheckpointTests
{
    private static readonly GptConfig Gpt = TinyModels.Gpt(tie: false);
    private static readonly BertConfig Bert = TinyModels.Bert(pooler: true);

    /// <summary>A GPT-2-named state dict for <see cref="Gpt"/>, plus (ours, theirs, transposed) expectations.</summary>
    private static (Dictionary<string, Tensor> StateDict, List<(string Ours, string Theirs, bool Transposed)> Expected) Gpt2StateDict()
    {
        manual_seed(21);
        int w = Gpt.Width, f = Gpt.EffectiveFeedForwardWidth;
        var hf = new Dictionary<string, Tensor>();
        var expected = new List<(string, string, bool)>();
        void Add(string ours, string theirs, bool transposed, params long[] shape)
        {
            hf[theirs] = randn(shape);
            expected.Add((ours, theirs, transposed));
        }
        Add("token_embedding.weight", "transformer.wte.weight", false, Gpt.VocabSize, w);
        Add("position_embedding.weight", "transformer.wpe.weight", false, Gpt.ContextLength, w);
        for (int i = 0; i < Gpt.Layers; i++)
        {
            string b = $"blocks.{i}.", h = $"transformer.h.{i}.";
            Add(b + "attention_norm.weight", h + "ln_1.weight", false, w);
            Add(b + "attention_norm.bias", h + "ln_1.bias", false, w);
            Add(b + "attention.qkv.weight", h + "attn.c_attn.weight", true, w, 3 * w);
            Add(b + "attention.qkv.bias", h + "attn.c_attn.bias", false, 3 * w);
            Add(b + "attention.output.weight", h + "attn.c_proj.weight", true, w, w);
            Add(b + "attention.output.bias", h + "attn.c_proj.bias", false, w);
            Add(b + "feed_forward_norm.weight", h + "ln_2.weight", false, w);
            Add(b + "feed_forward_norm.bias", h + "ln_2.bias", false, w);
            Add(b + "feed_forward.expand.weight", h + "mlp.c_fc.weight", true, w, f);
            Add(b + "feed_forward.expand.bias", h + "mlp.c_fc.bias", false, f);
            Add(b + "feed_forward.project.weight", h + "mlp.c_proj.weight", true, f, w);
            Add(b + "feed_forward.project.bias", h + "mlp.c_proj.bias", false, w);
            hf[h + "attn.bias"] = ones(1, 1, Gpt.ContextLength, Gpt.ContextLength).tril(); // GPT-2's causal-mask buffer
        }
        Add("final_norm.weight", "transformer.ln_f.weight", false, w);
        Add("final_norm.bias", "transformer.ln_f.bias", false, w);
        Add("lm_head.weight", "lm_head.weight", false, Gpt.VocabSize, w);
        hf["transformer.extra.weight"] = zeros(3);
        return (hf, expected);
    }

    private static Dictionary<string, Tensor> Parameters(nn.Module model) =>
        model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("pytorch_model.bin")]
    public void A_GPT2_named_checkpoint_loads_every_tensor_with_its_transform(string fileName)
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        var (hf, expected) = Gpt2StateDict();
        string path = folder.PathOf(fileName);
        if (fileName.EndsWith(".safetensors", StringComparison.Ordinal)) Safetensors.SaveStateDict(path, hf);
        else PyTorchPickler.PickleStateDict(path, hf);
        GptModel model = TinyModels.GptModel(seed: 5, config: Gpt);

        WeightLoadReport report = PretrainedFolder.LoadWeights(model, folder.Path);

        Dictionary<string, Tensor> loaded = Parameters(model);
        loaded.Keys.Should().BeEquivalentTo(expected.Select(e => e.Ours), "every tensor of the model is mapped");
        foreach (var (ours, theirs, transposed) in expected)
        {
            Tensor want = transposed ? hf[theirs].t() : hf[theirs];
            loaded[ours].IsIdenticalTo(want).Should().BeTrue($"{ours} should equal {theirs}{(transposed ? " transposed" : "")}");
        }
        report.Loaded.Should().HaveCount(expected.Count);
        report.Ignored.Should().HaveCount(Gpt.Layers).And.OnlyContain(n => n.EndsWith(".attn.bias"));
        report.Unused.Should().Equal("transformer.extra.weight");
    }

    [Fact]
    public void A_BERT_named_checkpoint_concatenates_query_key_value_and_accepts_gamma_beta_names()
    {
        using var scope = NewDisposeScope();
        manual_seed(22);
        int w = Bert.Width, f = Bert.EffectiveFeedForwardWidth;
        var hf = new Dictionary<string, Tensor>
        {
            ["bert.embeddings.word_embeddings.weight"] = randn(Bert.VocabSize, w),
            ["bert.embeddings.position_embeddings.weight"] = randn(Bert.ContextLength, w),
            ["bert.embeddings.token_type_embeddings.weight"] = randn(Bert.TypeVocabSize, w),
            ["bert.embeddings.LayerNorm.gamma"] = randn(w),
            ["bert.embeddings.LayerNorm.beta"] = randn(w),
            ["bert.embeddings.position_ids"] = arange(Bert.ContextLength).unsqueeze(0),
            ["bert.pooler.dense.weight"] = randn(w, w),
            ["bert.pooler.dense.bias"] = randn(w),
            ["classifier.weight"] = randn(Bert.NumLabels, w),
            ["classifier.bias"] = randn(Bert.NumLabels),
        };
        for (int i = 0; i < Bert.Layers; i++)
        {
            string l = $"bert.encoder.layer.{i}.";
            foreach (string part in new[] { "query", "key", "value" })
            {
                hf[$"{l}attention.self.{part}.weight"] = randn(w, w);
                hf[$"{l}attention.self.{part}.bias"] = randn(w);
            }
            hf[l + "attention.output.dense.weight"] = randn(w, w);
            hf[l + "attention.output.dense.bias"] = randn(w);
            hf[l + "attention.output.LayerNorm.weight"] = randn(w);
            hf[l + "attention.output.LayerNorm.bias"] = randn(w);
            hf[l + "intermediate.dense.weight"] = randn(f, w);
            hf[l + "intermediate.dense.bias"] = randn(f);
            hf[l + "output.dense.weight"] = randn(w, f);
            hf[l + "output.dense.bias"] = randn(w);
            hf[l + "output.LayerNorm.weight"] = randn(w);
            hf[l + "output.LayerNorm.bias"] = randn(w);
        }
        BertModel model = TinyModels.BertModel(seed: 6, config: Bert);

        WeightLoadReport report = PretrainedFolder.LoadWeights(model, hf);

        Dictionary<string, Tensor> p = Parameters(model);
        p["embedding_norm.weight"].IsIdenticalTo(hf["bert.embeddings.LayerNorm.gamma"]).Should().BeTrue();
        p["pooler.weight"].IsIdenticalTo(hf["bert.pooler.dense.weight"]).Should().BeTrue();
        for (int i = 0; i < Bert.Layers; i++)
        {
            string l = $"bert.encoder.layer.{i}.";
            Tensor qkv = p[$"blocks.{i}.attention.qkv.weight"];
            qkv[TensorIndex.Slice(0, w)].IsIdenticalTo(hf[l + "attention.self.query.weight"]).Should().BeTrue();
            qkv[TensorIndex.Slice(w, 2 * w)].IsIdenticalTo(hf[l + "attention.self.key.weight"]).Should().BeTrue();
            qkv[TensorIndex.Slice(2 * w, 3 * w)].IsIdenticalTo(hf[l + "attention.self.value.weight"]).Should().BeTrue();
            p[$"blocks.{i}.attention.qkv.bias"][TensorIndex.Slice(w, 2 * w)].IsIdenticalTo(hf[l + "attention.self.key.bias"]).Should().BeTrue();
            p[$"blocks.{i}.attention_norm.weight"].IsIdenticalTo(hf[l + "attention.output.LayerNorm.weight"]).Should().BeTrue();
            p[$"blocks.{i}.feed_forward.expand.weight"].IsIdenticalTo(hf[l + "intermediate.dense.weight"]).Should().BeTrue();
            p[$"blocks.{i}.feed_forward.project.weight"].IsIdenticalTo(hf[l + "output.dense.weight"]).Should().BeTrue();
            p[$"blocks.{i}.feed_forward_norm.bias"].IsIdenticalTo(hf[l + "output.LayerNorm.bias"]).Should().BeTrue();
        }
        report.Loaded.Should().HaveCount(p.Count);
        report.Ignored.Should().Equal("bert.embeddings.position_ids");
        report.Unused.Should().BeEmpty();
    }

    [Fact]
    public void A_mismatched_shape_is_rejected_with_both_shapes_and_the_model_is_unchanged()
    {
        using var scope = NewDisposeScope();
        var (hf, _) = Gpt2StateDict();
        hf["transformer.wte.weight"] = randn(Gpt.VocabSize + 1, Gpt.Width);
        hf.Remove("transformer.h.1.ln_2.bias");
        GptModel model = TinyModels.GptModel(seed: 7, config: Gpt);
        Dictionary<string, Tensor> before = Parameters(model);

        Action load = () => PretrainedFolder.LoadWeights(model, hf);

        load.Should().Throw<InvalidDataException>()
            .WithMessage("The GPT-2 checkpoint does not fit this model (2 problem(s); the model was not changed): " +
                         "transformer.wte.weight [38, 24] copied gives [38, 24], but the model's token_embedding.weight is [37, 24]; " +
                         "missing transformer.h.1.ln_2.bias (for blocks.1.feed_forward_norm.bias). Check that the model's configuration*");
        Parameters(model).Should().AllSatisfy(p => p.Value.IsIdenticalTo(before[p.Key]).Should().BeTrue(p.Key));
    }

    [Fact]
    public void A_truncated_file_fails_clearly_and_changes_nothing()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        string path = folder.PathOf("model.safetensors");
        Safetensors.SaveStateDict(path, Gpt2StateDict().StateDict);
        byte[] whole = File.ReadAllBytes(path);
        File.WriteAllBytes(path, whole[..(whole.Length / 2)]);
        GptModel model = TinyModels.GptModel(seed: 8, config: Gpt);
        Dictionary<string, Tensor> before = Parameters(model);

        Action load = () => PretrainedFolder.LoadWeights(model, path);

        load.Should().Throw<InvalidDataException>().WithMessage($"{path}: the safetensors entry * has data_offsets * outside the * data bytes (truncated file?).");
        Parameters(model).Should().AllSatisfy(p => p.Value.IsIdenticalTo(before[p.Key]).Should().BeTrue(p.Key));
    }

    [Fact]
    public void A_pickle_that_names_another_class_is_refused_without_running_anything()
    {
        using var folder = new TemporaryFolder();
        string marker = folder.PathOf("pwned");
        string path = folder.PathOf("pytorch_model.bin");
        // {"x": os.system("touch <marker>")} in pickle protocol 2, inside the zip layout torch.save writes.
        byte[] command = Encoding.UTF8.GetBytes("touch " + marker);
        byte[] pickle =
        [
            0x80, 0x02, (byte)'}', (byte)'X', 1, 0, 0, 0, (byte)'x',
            (byte)'c', .. "os\nsystem\n"u8.ToArray(),
            (byte)'X', .. BitConverter.GetBytes(command.Length), .. command,
            0x85, (byte)'R', (byte)'s', (byte)'.',
        ];
        using (ZipArchive zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            using (Stream s = zip.CreateEntry("archive/data.pkl").Open()) s.Write(pickle);
            using (Stream s = zip.CreateEntry("archive/version").Open()) s.Write("3\n"u8);
        }

        Action read = () => StateDictFile.Read(path);

        read.Should().Throw<InvalidDataException>().WithMessage($"{path} could not be read as a PyTorch pickle state dict: *os.system*");
        File.Exists(marker).Should().BeFalse("nothing in the pickle may run");
    }

    [Fact]
    public void A_missing_file_or_an_empty_folder_says_what_was_looked_for()
    {
        using var folder = new TemporaryFolder();

        ((Action)(() => StateDictFile.Read(folder.PathOf("none.safetensors")))).Should().Throw<FileNotFoundException>().WithMessage("No checkpoint file or folder at*");
        ((Action)(() => StateDictFile.Read(folder.Path))).Should().Throw<FileNotFoundException>().WithMessage("*contains none of model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json.");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Saving_and_loading_in_TorchSharps_format_and_as_safetensors_gives_identical_logits(bool torchSharpFormat)
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        string path = folder.PathOf(torchSharpFormat ? "model.dat" : "model.safetensors");
        BertModel original = TinyModels.BertModel(seed: 9, config: Bert);
        BertModel restored = TinyModels.BertModel(seed: 10, config: Bert);
        Tensor ids = TinyModels.Ids(11, 2, 6, Bert.VocabSize);

        if (torchSharpFormat)
        {
            original.save(path);
            restored.load(path);
        }
        else
        {
            original.save_safetensors(path);
            restored.load_safetensors(path);
        }

        restored.call(ids).IsIdenticalTo(original.call(ids)).Should().BeTrue();
    }
}
