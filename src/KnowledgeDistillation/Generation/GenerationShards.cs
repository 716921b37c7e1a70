using KnowledgeDistillation.Formats;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Generation;

/// <summary>
/// Sequence-level KD's data: a teacher's completions of a prompt set, written to shards on disk
/// (<c>generations-00000.safetensors</c>, …, with a <c>generations.json</c> manifest), then read back as ordinary training
/// batches whose labels cover the completions. Writing is resumable: each shard is written under a temporary name and
/// renamed when complete, finished shards are recognised by their SHA-256 in the manifest and skipped, and batch i is
/// generated with seed <c>Seed + i</c> whatever happened before, so a run restarted after a crash writes shards
/// bit-identical to an uninterrupted run. The manifest's fingerprint covers the teacher too (its type and every
/// weight), so a restart with a changed teacher is refused instead of mixing its completions with the old teacher's.
/// </summary>
public static class GenerationShards
{
    /// <summary>The manifest's file name.</summary>
    public const string ManifestName = "generations.json";

    /// <summary>Generates the teacher's completions of <paramref name="prompts"/> into <paramref name="folder"/>, skipping shards already complete.</summary>
    /// <param name="teacher">The model that generates.</param>
    /// <param name="prompts">The prompt batches, in a fixed order (the same list on every restart).</param>
    /// <param name="folder">Where the shards go (created when missing).</param>
    /// <param name="options">Generation settings; batch i uses seed <c>options.Seed + i</c>.</param>
    /// <param name="batchesPerShard">Prompt batches per shard.</param>
    /// <param name="cancellation">Stops between batches (a shard in progress is not written).</param>
    /// <returns>How many shards were written now (the rest were complete already).</returns>
    /// <exception cref="InvalidDataException">The folder holds a manifest for another teacher, other prompts or other settings.</exception>
    public static int Write(ICausalLanguageModel teacher, IReadOnlyList<PromptBatch> prompts, string folder, GenerationOptions options, int batchesPerShard = 16,
        CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (batchesPerShard < 1) throw new ArgumentOutOfRangeException(nameof(batchesPerShard), batchesPerShard, "batchesPerShard must be at least 1.");
        if (prompts.Count == 0) throw new ArgumentException("prompts is empty.", nameof(prompts));

        Directory.CreateDirectory(folder);
        string fingerprint = Fingerprint(teacher, prompts, options, batchesPerShard);
        JsonObject manifest = ReadManifest(folder, fingerprint) ?? new JsonObject { ["fingerprint"] = fingerprint, ["batches"] = prompts.Count, ["shards"] = new JsonObject() };
        var shards = (JsonObject)manifest["shards"]!;
        int shardCount = (prompts.Count + batchesPerShard - 1) / batchesPerShard, written = 0;
        foreach (string stale in Directory.EnumerateFiles(folder, "*.tmp-*")) File.Delete(stale);

        for (int shard = 0; shard < shardCount; shard++)
        {
            string name = ShardName(shard), path = Path.Combine(folder, name);
            if (shards[name]?.GetValue<string>() is { } hash && File.Exists(path) && Sha256(path) == hash) continue;

            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            using (var scope = NewDisposeScope())
            {
                for (int i = shard * batchesPerShard; i < Math.Min(prompts.Count, (shard + 1) * batchesPerShard); i++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    PromptBatch batch = prompts[i];
                    using GenerationResult result = TextGeneration.Generate(teacher, batch.PromptIds, batch.PromptMask, options with { Seed = options.Seed + i });
                    string key = $"batch.{i:D6}.";
                    tensors[key + "prompt_ids"] = result.Sequences.narrow(1, 0, result.PromptLength).cpu().contiguous();
                    tensors[key + "prompt_mask"] = result.AttentionMask.narrow(1, 0, result.PromptLength).cpu().contiguous();
                    tensors[key + "completions"] = result.Completions.cpu().contiguous();
                    tensors[key + "completion_mask"] = result.CompletionMask.narrow(1, result.PromptLength, result.Completions.shape[1]).cpu().contiguous();
                }
                string temporary = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
                SafetensorsFile.Write(temporary, tensors, new Dictionary<string, string> { ["format"] = "pt", ["fingerprint"] = fingerprint });
                File.Move(temporary, path, overwrite: true);
            }
            shards[name] = Sha256(path);
            string manifestTemporary = Path.Combine(folder, ManifestName + ".tmp-" + Guid.NewGuid().ToString("N")[..8]);
            File.WriteAllText(manifestTemporary, manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            File.Move(manifestTemporary, Path.Combine(folder, ManifestName), overwrite: true);
            written++;
        }
        return written;
    }

    /// <summary>
    /// The shards of <paramref name="folder"/> as training batches (prompt + completion, labels on the completions, see
    /// <see cref="OnPolicyBatches.Assemble"/>), in prompt order. Every shard is checked against the manifest first.
    /// </summary>
    /// <exception cref="InvalidDataException">A shard is missing, incomplete or changed (the message names it).</exception>
    public static List<DistillationBatch<TokenBatch>> Read(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string manifestPath = Path.Combine(folder, ManifestName);
        if (!File.Exists(manifestPath)) throw new FileNotFoundException($"{folder} has no {ManifestName}; write the generations first.", manifestPath);
        JsonObject manifest = JsonFile.ReadObject(manifestPath);
        int batches = manifest["batches"]!.GetValue<int>();
        var shards = (JsonObject)manifest["shards"]!;
        var result = new List<DistillationBatch<TokenBatch>>();
        foreach ((string name, JsonNode? hash) in shards.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            string path = Path.Combine(folder, name);
            if (!File.Exists(path) || Sha256(path) != hash!.GetValue<string>())
            {
                throw new InvalidDataException($"{path} is missing or does not match its SHA-256 in {ManifestName}; run the writer again to regenerate it.");
            }
            Dictionary<string, Tensor> tensors = Safetensors.LoadStateDict(path);
            foreach (string prefix in tensors.Keys.Where(k => k.EndsWith(".prompt_ids", StringComparison.Ordinal)).Select(k => k[..^"prompt_ids".Length]).Order(StringComparer.Ordinal))
            {
                DistillationBatch<TokenBatch> batch = OnPolicyBatches.Assemble(tensors[prefix + "prompt_ids"], tensors[prefix + "prompt_mask"], tensors[prefix + "completions"], tensors[prefix + "completion_mask"]);
                result.Add(batch with { DisposeAfterUse = false });
            }
            foreach (Tensor t in tensors.Values) t.Dispose();
        }
        if (result.Count != batches)
        {
            throw new InvalidDataException($"{folder} holds {result.Count} of the {batches} generated batches its manifest promises; run the writer again to finish it.");
        }
        return result;
    }

    private static string ShardName(int shard) => $"generations-{shard.ToString("D5", CultureInfo.InvariantCulture)}.safetensors";

    private static JsonObject? ReadManifest(string folder, string fingerprint)
    {
        string path = Path.Combine(folder, ManifestName);
        if (!File.Exists(path)) return null;
        JsonObject manifest = JsonFile.ReadObject(path);
        string? found = manifest["fingerprint"] is JsonValue value && value.TryGetValue(out string? text) ? text : null;
        if (found != fingerprint)
        {
            throw new InvalidDataException($"{path} belongs to another teacher, other prompts or other generation settings (fingerprint {found}, expected {fingerprint}); use another folder or delete it.");
        }
        return manifest;
    }

    /// <summary>SHA-256 over the teacher (type, and every state-dict entry's name, dtype, shape and bytes), the prompts' bytes and every setting that changes the output.</summary>
    private static string Fingerprint(ICausalLanguageModel teacher, IReadOnlyList<PromptBatch> prompts, GenerationOptions options, int batchesPerShard)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes(JsonSerializer.Serialize(options) + "|" + batchesPerShard.ToString(CultureInfo.InvariantCulture)));
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes(teacher.GetType().FullName + "|"));
        foreach ((string name, Tensor value) in teacher.Module.state_dict().OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            using var scope = NewDisposeScope();
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"{name}|{value.dtype}|{string.Join(",", value.shape)}|"));
            hash.AppendData(value.detach().cpu().contiguous().bytes);
        }
        foreach (PromptBatch p in prompts)
        {
            using var scope = NewDisposeScope();
            hash.AppendData(p.PromptIds.to(ScalarType.Int64).cpu().contiguous().bytes);
            if (p.PromptMask is not null) hash.AppendData(p.PromptMask.to(ScalarType.Bool).cpu().contiguous().bytes);
        }
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }

    private static string Sha256(string path)
    {
        using FileStream stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }
}
