using System.Text.Json;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Hugging Face pretrained folders in and out: <see cref="Load"/> reads <c>config.json</c>, builds the matching
/// reference model and loads its weights (safetensors, sharded safetensors or <c>pytorch_model.bin</c>);
/// <see cref="Save"/> writes <c>config.json</c> and <c>model.safetensors</c> in Hugging Face names and layouts, so
/// that <c>transformers</c> loads the folder unchanged. Supported: <c>GPT2LMHeadModel</c>, <c>GPT2Model</c>,
/// <c>BertModel</c>, <c>BertForSequenceClassification</c>, <c>BertForMaskedLM</c>, <c>BertForPreTraining</c> (loaded
/// with its masked-LM head), <c>LlamaForCausalLM</c>, <c>Qwen2ForCausalLM</c>, <c>MistralForCausalLM</c>.
/// </summary>
public static class PretrainedFolder
{
    private const string SingleFile = "model.safetensors";
    private const string IndexFile = "model.safetensors.index.json";

    /// <summary>Reads and translates a folder's <c>config.json</c> without loading weights.</summary>
    /// <exception cref="FileNotFoundException">The folder has no <c>config.json</c>.</exception>
    /// <exception cref="InvalidDataException">A required field is missing or has the wrong type (the message names the file and the field).</exception>
    /// <exception cref="NotSupportedException">The architecture, or a field's value, is not supported (the message names it).</exception>
    public static PretrainedConfig ReadConfig(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"No pretrained folder at {folder}.");
        return HuggingFaceConfig.Read(folder);
    }

    /// <summary>Builds the model <c>config.json</c> describes and loads the folder's weights into it, all or nothing.</summary>
    /// <exception cref="InvalidDataException">The weights do not fit the configuration, or a file is damaged (the message names it).</exception>
    public static PretrainedModel<IModuleModel<TokenBatch>> Load(string folder)
    {
        PretrainedConfig source = ReadConfig(folder);
        nn.Module model = source.Config switch
        {
            GptConfig g => new GptModel(g),
            BertConfig b => new BertModel(b),
            LlamaConfig l => new LlamaModel(l),
            _ => throw new NotSupportedException(source.Architecture),
        };
        try
        {
            Dictionary<string, Tensor> stateDict = StateDictFile.Read(folder);
            CheckpointLoadReport report;
            try
            {
                report = Mapping(model, source.Architecture).Apply(model, stateDict, source.Architecture);
                report = report with { Notes = [.. source.Notes, .. ConfigAgreement.DtypeNotes(stateDict.Values)] };
            }
            finally
            {
                foreach (Tensor t in stateDict.Values) t.Dispose();
            }
            model.eval();
            return new PretrainedModel<IModuleModel<TokenBatch>>((IModuleModel<TokenBatch>)model, source, report);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Loads a folder whose architecture must be a <typeparamref name="TModel"/>.</summary>
    /// <exception cref="ArgumentException">The folder holds another architecture (the message names it and the class to use).</exception>
    public static PretrainedModel<TModel> Load<TModel>(string folder) where TModel : nn.Module, IModuleModel<TokenBatch>
    {
        PretrainedConfig source = ReadConfig(folder);
        string wanted = typeof(TModel).Name;
        string actual = source.Config switch { GptConfig => nameof(GptModel), BertConfig => nameof(BertModel), _ => nameof(LlamaModel) };
        if (actual != wanted)
        {
            throw new ArgumentException($"{folder} holds a {source.Architecture}, which loads as {actual}, not {wanted}; use {actual}.FromPretrained or PretrainedFolder.Load.", nameof(folder));
        }
        PretrainedModel<IModuleModel<TokenBatch>> loaded = Load(folder);
        return new PretrainedModel<TModel>((TModel)loaded.Model, loaded.Source, loaded.Report);
    }

    /// <summary>
    /// Writes <paramref name="model"/> as a Hugging Face pretrained folder: <c>config.json</c> and
    /// <c>model.safetensors</c> (or shards with an index), in Hugging Face names and layouts, tied weights written once.
    /// Files are written under temporary names and renamed into place; weight files of an earlier save that the new
    /// one replaces are removed, and nothing else in the folder is touched.
    /// </summary>
    /// <exception cref="NotSupportedException">The model's configuration has no Hugging Face equivalent (the message names the setting); nothing is written.</exception>
    public static void Save(IModuleModel<TokenBatch> model, string folder, PretrainedSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new PretrainedSaveOptions();
        options.Validate();
        nn.Module module = model.Module;
        (TransformerConfig config, string architecture) = Describe(module);
        JsonObject? template = Template(options.CopyTokenizerFrom, config, architecture);
        JsonObject json = HuggingFaceConfig.Write(config, architecture, DtypeName(options.Dtype), template);

        Directory.CreateDirectory(folder);
        Dictionary<string, Tensor> tensors = Mapping(module, architecture).Export(module);
        if (architecture == "BertForMaskedLM")
        {
            // Hugging Face's BertForMaskedLM has no pooler (its masked-LM head never reads it): writing ours would leave
            // weights transformers reports as unused.
            foreach (string pooler in tensors.Keys.Where(k => k.StartsWith("bert.pooler.", StringComparison.Ordinal)).ToArray())
            {
                tensors[pooler].Dispose();
                tensors.Remove(pooler);
            }
        }
        try
        {
            if (options.Dtype != ScalarType.Float32)
            {
                foreach (string name in tensors.Keys.ToArray())
                {
                    Tensor converted = tensors[name].to(options.Dtype);
                    tensors[name].Dispose();
                    tensors[name] = converted;
                }
            }
            var written = new List<string>();
            List<Dictionary<string, Tensor>> shards = Shard(tensors, options.MaxShardBytes);
            if (shards.Count == 1)
            {
                WriteAtomically(Path.Combine(folder, SingleFile), path => SafetensorsFile.Write(path, shards[0]));
                written.Add(SingleFile);
            }
            else
            {
                var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
                for (int i = 0; i < shards.Count; i++)
                {
                    string name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
                    WriteAtomically(Path.Combine(folder, name), path => SafetensorsFile.Write(path, shards[i]));
                    foreach (string tensor in shards[i].Keys) weightMap[tensor] = name;
                    written.Add(name);
                }
                long total = tensors.Values.Sum(t => t.numel() * t.ElementSize);
                WriteAtomically(Path.Combine(folder, IndexFile), path => new ShardIndex(weightMap, total).Write(path));
                written.Add(IndexFile);
            }
            RemoveStaleWeights(folder, written);
            WriteAtomically(Path.Combine(folder, HuggingFaceConfig.FileName),
                path => File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
            CopyTokenizer(options.CopyTokenizerFrom, folder);
        }
        finally
        {
            foreach (Tensor t in tensors.Values) t.Dispose();
        }
    }

    internal static CheckpointMapping Mapping(nn.Module model, string architecture) => model switch
    {
        GptModel g => HuggingFaceMappings.Gpt2(g.Config),
        BertModel b => HuggingFaceMappings.Bert(b.Config, bareEncoder: architecture == "BertModel"),
        LlamaModel l => HuggingFaceMappings.Llama(l.Config),
        _ => throw new NotSupportedException($"{model.GetType().Name} has no Hugging Face layout; GptModel, BertModel and LlamaModel do."),
    };

    private static (TransformerConfig Config, string Architecture) Describe(nn.Module module)
    {
        switch (module)
        {
            case GptModel g:
                if (g.Config.NormPlacement != NormPlacement.Pre) throw Unsupported("GPT2LMHeadModel", "NormPlacement.Post (GPT-2 is pre-norm)");
                return (g.Config, "GPT2LMHeadModel");
            case BertModel b:
                if (b.Config.NormPlacement != NormPlacement.Post) throw Unsupported("BERT", "NormPlacement.Pre (BERT is post-norm)");
                if (b.Config.Head == BertHead.SequenceClassification && !b.Config.UsePooler)
                {
                    throw Unsupported("BertForSequenceClassification", "UsePooler = false (its classifier always reads the pooler); keep the pooler, or save the encoder with Head = BertHead.None");
                }
                return (b.Config, b.Config.Head switch { BertHead.SequenceClassification => "BertForSequenceClassification", BertHead.MaskedLM => "BertForMaskedLM", _ => "BertModel" });
            case LlamaModel l:
                LlamaConfig c = l.Config;
                switch (c.Family)
                {
                    case DecoderFamily.Llama:
                        if (c.QueryKeyValueBias != c.OutputBias) throw Unsupported("LlamaForCausalLM", "QueryKeyValueBias without OutputBias (Llama's attention_bias sets both; use DecoderFamily.Qwen2 for query/key/value biases alone)");
                        if (c.SlidingWindow is not null) throw Unsupported("LlamaForCausalLM", "SlidingWindow (use DecoderFamily.Mistral)");
                        return (c, "LlamaForCausalLM");
                    case DecoderFamily.Qwen2:
                        if (!c.QueryKeyValueBias || c.OutputBias || c.FeedForwardBias) throw Unsupported("Qwen2ForCausalLM", "biases other than on query, key and value (Qwen2 has exactly those)");
                        if (c.SlidingWindow is not null) throw Unsupported("Qwen2ForCausalLM", "SlidingWindow");
                        return (c, "Qwen2ForCausalLM");
                    default:
                        if (c.QueryKeyValueBias || c.OutputBias || c.FeedForwardBias) throw Unsupported("MistralForCausalLM", "biases (Mistral has none)");
                        return (c, "MistralForCausalLM");
                }
            default:
                throw new NotSupportedException($"{module.GetType().Name} has no Hugging Face layout; GptModel, BertModel and LlamaModel do.");
        }
    }

    private static NotSupportedException Unsupported(string architecture, string setting) =>
        new($"The model cannot be saved as {architecture}: {setting}. Nothing was written.");

    private static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };

    /// <summary>The fields of a source config.json that describe the tokenizer, whatever the model type.</summary>
    private static readonly string[] TokenFields = ["bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id"];

    /// <summary>The fields that also carry over from a source of the same model type but another shape: the task's labels.</summary>
    private static readonly string[] TaskFields = ["id2label", "label2id", "problem_type"];

    /// <summary>
    /// What the saved config.json keeps of the source folder's. A model of the source's very shape (the same model type
    /// and every size field equal: the teacher itself, fine-tuned) keeps all of it. A model of another shape — a
    /// student — keeps only the token ids and the task's labels: the rest of a teacher's config may describe the
    /// teacher's shape (<c>layer_types</c> has one entry per layer, <c>max_window_layers</c> counts layers) and would be
    /// wrong, or refused by transformers, for a shallower student.
    /// </summary>
    private static JsonObject? Template(string? source, TransformerConfig config, string architecture)
    {
        string? path = source is null ? null : Path.Combine(source, HuggingFaceConfig.FileName);
        if (path is null || !File.Exists(path)) return null;
        JsonObject root = JsonFile.ReadObject(path);
        JsonObject ours = HuggingFaceConfig.Write(config, architecture, "float32", null);
        bool sameType = JsonNode.DeepEquals(root["model_type"], ours["model_type"]);
        // Fields the source leaves out take their defaults there; each field both give must agree.
        bool sameShape = sameType && ours.Where(p => p.Key is not ("architectures" or "torch_dtype" or "dtype") && root[p.Key] is not null).All(p => SameValue(root[p.Key], p.Value));
        if (sameShape) return root;
        var template = new JsonObject();
        foreach (string key in sameType ? TokenFields.Concat(TaskFields) : TokenFields)
        {
            if (root[key] is { } value) template[key] = value.DeepClone();
        }
        return template;
    }

    /// <summary>Whether a source field equals the one this model would write (numbers compared as numbers: 1e-05 and 0.00001 are equal).</summary>
    private static bool SameValue(JsonNode? source, JsonNode? ours) =>
        source is JsonValue a && ours is JsonValue b && a.TryGetValue(out double x) && b.TryGetValue(out double y) ? x == y : JsonNode.DeepEquals(source, ours);

    private static List<Dictionary<string, Tensor>> Shard(Dictionary<string, Tensor> tensors, long? maxBytes)
    {
        var shards = new List<Dictionary<string, Tensor>> { new(StringComparer.Ordinal) };
        long size = 0;
        foreach (string name in tensors.Keys.Order(StringComparer.Ordinal))
        {
            long bytes = tensors[name].numel() * tensors[name].ElementSize;
            if (maxBytes is { } limit && size > 0 && size + bytes > limit)
            {
                shards.Add(new Dictionary<string, Tensor>(StringComparer.Ordinal));
                size = 0;
            }
            shards[^1][name] = tensors[name];
            size += bytes;
        }
        return shards;
    }

    private static void WriteAtomically(string path, Action<string> write)
    {
        string temporary = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            write(temporary);
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            if (File.Exists(temporary)) File.Delete(temporary);
            throw;
        }
    }

    private static void RemoveStaleWeights(string folder, List<string> written)
    {
        IEnumerable<string> candidates = Directory.EnumerateFiles(folder, "model-*-of-*.safetensors")
            .Append(Path.Combine(folder, SingleFile)).Append(Path.Combine(folder, IndexFile));
        foreach (string file in candidates.Where(File.Exists))
        {
            if (!written.Contains(Path.GetFileName(file))) File.Delete(file);
        }
    }

    private static void CopyTokenizer(string? source, string folder)
    {
        if (source is null || Path.GetFullPath(source) == Path.GetFullPath(folder)) return;
        foreach (string name in PretrainedSaveOptions.TokenizerFiles)
        {
            string from = Path.Combine(source, name);
            if (File.Exists(from)) File.Copy(from, Path.Combine(folder, name), overwrite: true);
        }
    }
}
