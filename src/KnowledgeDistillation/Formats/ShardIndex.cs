using System.Text.Json;
using System.Text.Json.Nodes;

namespace KnowledgeDistillation.Formats;

/// <summary>
/// The index of a sharded Hugging Face checkpoint (<c>model.safetensors.index.json</c>): which shard file holds each
/// tensor, and the total size of the tensor data in bytes.
/// </summary>
/// <param name="WeightMap">Tensor name → shard file name (in the index's folder).</param>
/// <param name="TotalSize">Bytes of tensor data over all shards.</param>
public sealed record ShardIndex(Dictionary<string, string> WeightMap, long TotalSize)
{
    /// <summary>Reads an index file.</summary>
    /// <exception cref="InvalidDataException">It is not valid JSON or has no <c>weight_map</c> of strings; the message names the file.</exception>
    public static ShardIndex Read(string path)
    {
        try
        {
            JsonNode root = JsonFile.ReadObject(path);
            JsonObject map = root["weight_map"] as JsonObject ?? throw new InvalidDataException($"{path} has no \"weight_map\" object.");
            var weights = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach ((string name, JsonNode? shard) in map)
            {
                string file = shard?.GetValue<string>() ?? throw new InvalidDataException($"{path}: weight_map entry {name} is null.");
                if (file.Length == 0 || file.Contains('/') || file.Contains('\\') || file.Contains(".."))
                {
                    throw new InvalidDataException($"{path}: weight_map entry {name} names \"{file}\", which is not a file name in the index's folder.");
                }
                weights[name] = file;
            }
            long total = root["metadata"]?["total_size"]?.GetValue<long>() ?? 0;
            return new ShardIndex(weights, total);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path} is not a valid shard index: {e.Message}", e);
        }
    }

    /// <summary>Writes the index as Hugging Face does.</summary>
    public void Write(string path)
    {
        var map = new JsonObject();
        foreach ((string name, string shard) in WeightMap.OrderBy(p => p.Key, StringComparer.Ordinal)) map[name] = shard;
        var root = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = TotalSize }, ["weight_map"] = map };
        File.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
