using System.Text.Json;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Formats;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>Writes a pretrained folder: the weights in the family's names (sharded when asked), then <c>config.json</c>, then the tokenizer files.</summary>
internal static class PretrainedWriter
{
    private const string SingleFile = "model.safetensors";
    private const string IndexFile = "model.safetensors.index.json";

    public static void Write(nn.Module module, string folder, PretrainedSaveOptions options)
    {
        ModelFamily family = ModelFamilies.Of(module);
        string architecture = family.ArchitectureToSave(module);
        TransformerConfig config = family.ConfigOf(module);
        JsonObject? template = ConfigTemplate.From(options.CopyTokenizerFrom, family, config, architecture);
        JsonObject json = HuggingFaceConfig.Write(family, config, architecture, DtypeName(options.Dtype), template);

        Directory.CreateDirectory(folder);
        Dictionary<string, Tensor> tensors = family.Mapping(module, architecture).Export(module);
        foreach (string name in tensors.Keys.Where(k => !family.Saves(k, architecture)).ToArray())
        {
            tensors[name].Dispose();
            tensors.Remove(name);
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
            List<string> written = WriteWeights(folder, tensors, options.MaxShardBytes);
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

    private static List<string> WriteWeights(string folder, Dictionary<string, Tensor> tensors, long? maxShardBytes)
    {
        List<Dictionary<string, Tensor>> shards = Shard(tensors, maxShardBytes);
        if (shards.Count == 1)
        {
            WriteAtomically(Path.Combine(folder, SingleFile), path => SafetensorsFile.Write(path, shards[0]));
            return [SingleFile];
        }
        var written = new List<string>();
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
        return written;
    }

    private static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };

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
