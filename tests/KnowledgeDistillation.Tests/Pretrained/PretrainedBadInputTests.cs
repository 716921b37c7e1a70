using KnowledgeDistillation.Formats;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>Damaged or unsupported pretrained folders: each error names the file and the field, and nothing is changed.</summary>
public class PretrainedBadInputTests
{
    /// <summary>A writable copy of a fixture folder.</summary>
    private static TemporaryFolder CopyOf(string fixture)
    {
        var folder = new TemporaryFolder();
        foreach (string file in Directory.GetFiles(PretrainedFixtures.Folder(fixture))) File.Copy(file, folder.PathOf(Path.GetFileName(file)));
        return folder;
    }

    private static void EditConfig(TemporaryFolder folder, Action<JsonObject> edit)
    {
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.PathOf("config.json")))!;
        edit(config);
        File.WriteAllText(folder.PathOf("config.json"), config.ToJsonString());
    }

    private static string Snapshot(TemporaryFolder folder) =>
        string.Join("|", Directory.GetFiles(folder.Path).Order(StringComparer.Ordinal).Select(f => $"{Path.GetFileName(f)}:{Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))}"));

    public static TheoryData<string, string, string> ConfigDamage() => new()
    {
        { "llama", "remove:hidden_size", "*config.json has no \"hidden_size\" field, which this architecture requires." },
        { "gpt2", "remove:n_layer", "*config.json has no \"n_layer\" field*" },
        { "bert-classification", "set:num_attention_heads=\"four\"", "*config.json: \"num_attention_heads\" must be an integer; got \"four\"." },
        { "llama", "set:architectures=[\"Qwen3ForCausalLM\"]", "*config.json: the architecture Qwen3ForCausalLM (model_type \"llama\") is not supported; supported: GPT2LMHeadModel*" },
        { "llama", "set:rope_scaling={\"rope_type\":\"llama3\",\"factor\":8.0}", "*config.json: rope_scaling of type \"llama3\" is not supported*" },
        { "gpt2", "set:activation_function=\"relu\"", "*config.json: activation_function \"relu\" is not supported*" },
        { "qwen2", "set:use_sliding_window=true", "*config.json: use_sliding_window true is not supported for Qwen2*" },
        { "bert-classification", "set:position_embedding_type=\"relative_key\"", "*position_embedding_type \"relative_key\" is not supported*" },
        { "gpt2", "set:model_type=\"t5\"", "*model_type \"t5\" does not match the architecture GPT2LMHeadModel*" },
        // Values of the right type but impossible: named by the file's field, not the library's property.
        { "gpt2", "set:n_head=0", "*config.json: n_head must be positive; got 0." },
        { "gpt2", "set:n_head=-2", "*config.json: n_head must be positive; got -2." },
        { "gpt2", "set:n_head=3", "*config.json: n_head (3) must divide n_embd (64)." },
        { "gpt2", "set:n_positions=0", "*config.json: n_positions must be positive; got 0." },
        { "gpt2", "set:n_inner=-5", "*config.json: n_inner must be 0 (for 4 × n_embd) or positive; got -5." },
        { "gpt2", "set:layer_norm_epsilon=-1", "*config.json: layer_norm_epsilon must be positive; got -1." },
        { "gpt2", "set:resid_pdrop=1.5", "*config.json: resid_pdrop must lie in [0, 1); got 1.5." },
        { "llama", "set:num_key_value_heads=3", "*config.json: num_key_value_heads (3) must divide num_attention_heads (4)." },
        { "llama", "set:head_dim=-8", "*config.json: head_dim must be 0 (hidden_size / num_attention_heads) or positive; got -8." },
        { "llama", "set:rope_theta=0", "*config.json: rope_theta must be positive and finite; got 0." },
        { "llama", "set:rms_norm_eps=0", "*config.json: rms_norm_eps must be positive; got 0." },
        { "bert-classification", "set:id2label={}", "*config.json: id2label (or num_labels) must be positive; got 0." },
        { "bert-classification", "set:type_vocab_size=0", "*config.json: type_vocab_size must be positive; got 0." },
        { "gpt2", "set:architectures=[5]", "*config.json: \"architectures\" must be a list of strings; got [5]." },
        // Sizes that would end the process natively if libtorch started allocating them.
        { "gpt2", "set:n_layer=1000000", "*config.json: These sizes imply about *parameters*more than the*n_layer 1000000*Nothing was allocated.*" },
        { "gpt2", "set:n_embd=1000000000", "*config.json: *n_embd 1000000000*Nothing was allocated.*" },
        { "gpt2", "set:vocab_size=2147483647", "*config.json: *vocab_size 2147483647*Nothing was allocated.*" },
        { "llama", "set:hidden_size=1000000000", "*config.json: *hidden_size 1000000000*" },
        { "llama", "set:intermediate_size=1000000000", "*config.json: *intermediate_size 1000000000*Nothing was allocated.*" },
    };

    [Fact]
    public void A_config_with_a_property_twice_or_that_is_a_link_to_an_endless_device_names_the_file()
    {
        using TemporaryFolder folder = CopyOf("gpt2");
        string text = File.ReadAllText(folder.PathOf("config.json"));
        File.WriteAllText(folder.PathOf("config.json"), text.Replace("\"n_layer\"", "\"n_layer\": 7, \"n_layer\"", StringComparison.Ordinal));

        ((Action)(() => PretrainedFolder.Load(folder.Path))).Should().Throw<InvalidDataException>().WithMessage("*config.json gives \"n_layer\" twice; a property must appear once.");

        File.Delete(folder.PathOf("config.json"));
        File.CreateSymbolicLink(folder.PathOf("config.json"), "/dev/zero");
        ((Action)(() => PretrainedFolder.Load(folder.Path))).Should().Throw<InvalidDataException>().WithMessage("*config.json is larger than 256 MiB*");
    }

    [Theory]
    [MemberData(nameof(ConfigDamage))]
    public void A_damaged_or_unsupported_config_names_the_file_and_the_field(string fixture, string edit, string message)
    {
        using TemporaryFolder folder = CopyOf(fixture);
        EditConfig(folder, config =>
        {
            string[] parts = edit.Split(':', 2);
            if (parts[0] == "remove") config.Remove(parts[1]);
            else config[parts[1].Split('=', 2)[0]] = JsonNode.Parse(parts[1].Split('=', 2)[1]);
        });
        string before = Snapshot(folder);

        Action load = () => PretrainedFolder.Load(folder.Path);

        load.Should().Throw<Exception>().Where(e => e is InvalidDataException || e is NotSupportedException).WithMessage(message);
        load.Should().Throw<Exception>().WithMessage($"{folder.Path}*");
        Snapshot(folder).Should().Be(before);
    }

    [Fact]
    public void Weights_that_do_not_fit_the_config_name_the_tensor_and_both_shapes()
    {
        using TemporaryFolder folder = CopyOf("llama");
        EditConfig(folder, config => config["intermediate_size"] = 96);

        ((Action)(() => PretrainedFolder.Load(folder.Path))).Should().Throw<InvalidDataException>()
            .WithMessage("The LlamaForCausalLM checkpoint does not fit this model*model.layers.0.mlp.gate_proj.weight [128, 64] copied gives [128, 64], but the model's blocks.0.feed_forward.gate.weight is [96, 64]*");
    }

    [Fact]
    public void A_truncated_safetensors_header_names_the_file()
    {
        using TemporaryFolder folder = CopyOf("gpt2");
        byte[] bytes = File.ReadAllBytes(folder.PathOf("model.safetensors"));
        File.WriteAllBytes(folder.PathOf("model.safetensors"), bytes[..200]);

        ((Action)(() => PretrainedFolder.Load(folder.Path))).Should().Throw<InvalidDataException>()
            .WithMessage($"{folder.PathOf("model.safetensors")} declares a *-byte safetensors header, but the file holds only 192 bytes after the length (truncated or not safetensors).");
    }

    [Fact]
    public void A_float_weight_stored_as_integers_is_refused_rather_than_converted()
    {
        using TemporaryFolder folder = CopyOf("gpt2");
        byte[] bytes = File.ReadAllBytes(folder.PathOf("model.safetensors"));
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)BitConverter.ToUInt64(bytes, 0));
        int at = header.IndexOf("\"transformer.h.0.ln_1.weight\":{\"dtype\":\"F32\"", StringComparison.Ordinal);
        at.Should().BeGreaterThan(0, "the fixture's header lists h.0.ln_1.weight first with its dtype");
        // Same length, so the file stays well formed: only the declared type changes.
        byte[] edited = System.Text.Encoding.UTF8.GetBytes(header.Remove(at, 44).Insert(at, "\"transformer.h.0.ln_1.weight\":{\"dtype\":\"I32\""));
        edited.CopyTo(bytes, 8);
        File.WriteAllBytes(folder.PathOf("model.safetensors"), bytes);

        ((Action)(() => PretrainedFolder.Load(folder.Path))).Should().Throw<InvalidDataException>()
            .WithMessage("*transformer.h.0.ln_1.weight is stored as Int32, but the model's blocks.0.attention_norm.weight is Float32*");
    }

    [Fact]
    public void Safetensors_entries_sharing_bytes_or_declaring_an_overflowing_shape_are_refused()
    {
        using var folder = new TemporaryFolder();
        SafetensorsWithHeader(folder.PathOf("shared.safetensors"),
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
        SafetensorsWithHeader(folder.PathOf("gap.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
        SafetensorsWithHeader(folder.PathOf("huge.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0);

        ((Action)(() => KnowledgeDistillation.Formats.SafetensorsFile.ReadHeader(folder.PathOf("shared.safetensors")))).Should().Throw<InvalidDataException>()
            .WithMessage("*shared.safetensors: the safetensors entry b starts at byte 0 and overlaps a, which ends at byte 8; entries must tile the data.");
        ((Action)(() => KnowledgeDistillation.Formats.SafetensorsFile.ReadHeader(folder.PathOf("gap.safetensors")))).Should().Throw<InvalidDataException>()
            .WithMessage("*gap.safetensors: the safetensors entry a starts at byte 4 and leaves bytes 0 to 4 unused*");
        ((Action)(() => KnowledgeDistillation.Formats.SafetensorsFile.ReadHeader(folder.PathOf("huge.safetensors")))).Should().Throw<InvalidDataException>()
            .WithMessage("*huge.safetensors: the safetensors entry a declares F32 [4294967296, 4294967296], more bytes than any file holds.");
    }

    [Fact]
    public void A_truncated_pytorch_model_bin_names_the_file()
    {
        using TemporaryFolder folder = CopyOf("gpt2-bin");
        byte[] bytes = File.ReadAllBytes(folder.PathOf("pytorch_model.bin"));
        File.WriteAllBytes(folder.PathOf("pytorch_model.bin"), bytes[..(bytes.Length / 2)]);

        ((Action)(() => PretrainedFolder.Load(folder.Path))).Should().Throw<InvalidDataException>().WithMessage($"{folder.PathOf("pytorch_model.bin")}*");
    }

    [Fact]
    public void A_safetensors_entry_whose_size_disagrees_with_its_shape_is_named()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        SafetensorsWithHeader(folder.PathOf("x.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24);

        ((Action)(() => KnowledgeDistillation.Formats.SafetensorsFile.ReadHeader(folder.PathOf("x.safetensors")))).Should().Throw<InvalidDataException>()
            .WithMessage("*x.safetensors: the safetensors entry w spans 20 bytes, but F32 [2, 3] needs 24.");
    }

    [Fact]
    public void An_index_that_names_a_missing_shard_names_the_index_and_the_shard()
    {
        using TemporaryFolder folder = CopyOf("llama-sharded");
        File.Delete(folder.PathOf("model-00002-of-00002.safetensors"));

        ((Action)(() => PretrainedFolder.Load(folder.Path))).Should().Throw<InvalidDataException>()
            .WithMessage($"{folder.PathOf("model.safetensors.index.json")} lists the shard model-00002-of-00002.safetensors, which is not in {folder.Path}.");
    }

    [Fact]
    public void An_index_that_places_a_tensor_in_the_wrong_shard_is_refused()
    {
        using TemporaryFolder folder = CopyOf("llama-sharded");
        var index = (JsonObject)JsonNode.Parse(File.ReadAllText(folder.PathOf("model.safetensors.index.json")))!;
        index["weight_map"]!["model.norm.weight"] = "model-00001-of-00002.safetensors";
        File.WriteAllText(folder.PathOf("model.safetensors.index.json"), index.ToJsonString());

        ((Action)(() => PretrainedFolder.Load(folder.Path))).Should().Throw<InvalidDataException>()
            .WithMessage("*model-00002-of-00002.safetensors holds model.norm.weight, which *index.json places in model-00001-of-00002.safetensors.");
    }

    [Fact]
    public void A_folder_of_another_architecture_is_refused_by_the_typed_loader_naming_the_right_class()
    {
        ((Action)(() => PretrainedFolder.Load<GptModel>(PretrainedFixtures.Folder("qwen2")))).Should().Throw<ArgumentException>()
            .WithMessage("*holds a Qwen2ForCausalLM, which loads as LlamaModel, not GptModel; use PretrainedFolder.Load<LlamaModel> or PretrainedFolder.Load.*");
    }

    [Fact]
    public void Loading_a_mismatched_folder_into_an_existing_model_leaves_it_unchanged()
    {
        using var scope = NewDisposeScope();
        LlamaConfig config = (LlamaConfig)PretrainedFolder.ReadConfig(PretrainedFixtures.Folder("llama")).Config with { RopeTheta = 500_000 };
        var model = new LlamaModel(config);
        var before = model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());

        ((Action)(() => PretrainedFolder.LoadWeights(model, PretrainedFixtures.Folder("llama")))).Should().Throw<InvalidDataException>()
            .WithMessage("*rope_theta is 10000 in config.json but RopeTheta is 500000 in the model*");
        model.state_dict().Should().AllSatisfy(p => p.Value.IsIdenticalTo(before[p.Key]).Should().BeTrue(p.Key));
    }

    private static void SafetensorsWithHeader(string path, string header, int dataBytes)
    {
        byte[] json = System.Text.Encoding.UTF8.GetBytes(header);
        using var stream = File.Create(path);
        stream.Write(BitConverter.GetBytes((ulong)json.Length));
        stream.Write(json);
        stream.Write(new byte[dataBytes]);
    }
}
