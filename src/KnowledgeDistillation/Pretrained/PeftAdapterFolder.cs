using System.Text.Json;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Formats;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// LoRA adapters in PEFT's folder layout, so that Hugging Face's <c>PeftModel.from_pretrained(base, folder)</c> reads
/// what this library trained and the other way round. The layout, from PEFT's docs/source/developer_guides/checkpoint.md:
/// <c>adapter_config.json</c> (<c>peft_type</c> "LORA", <c>r</c>, <c>lora_alpha</c>, <c>target_modules</c>,
/// <c>fan_in_fan_out</c>, …) and <c>adapter_model.safetensors</c>, whose keys are
/// <c>base_model.model.</c> + the module's name in the Hugging Face model + <c>.lora_A.weight</c> ([r, in]) or
/// <c>.lora_B.weight</c> ([out, r]), the adapter name ("default") left out. Our fused query-key-value layers are written
/// as PEFT's separate ones: each part keeps A and takes its rows of B, which gives exactly the same update.
/// </summary>
public static class PeftAdapterFolder
{
    /// <summary>The adapter's configuration file.</summary>
    public const string ConfigFile = "adapter_config.json";

    /// <summary>The adapter's weights.</summary>
    public const string WeightsFile = "adapter_model.safetensors";

    private const string KeyPrefix = "base_model.model.";

    /// <summary>Writes the adapters of <paramref name="model"/> to <paramref name="folder"/> in PEFT's layout.</summary>
    /// <param name="model">A reference model (GPT-2, BERT, Llama family) with LoRA adapters from one <see cref="Lora.Apply"/>.</param>
    /// <param name="folder">Created if needed; the two files are replaced.</param>
    /// <param name="baseModelNameOrPath">PEFT's <c>base_model_name_or_path</c>: the base folder or hub name the adapter belongs to.</param>
    /// <exception cref="ArgumentException">The model has no adapters, or adapters of several ranks or scales.</exception>
    public static void Save(nn.Module model, string folder, string? baseModelNameOrPath = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        IReadOnlyDictionary<string, LoraLayer> adapters = Lora.LayersOf(model);
        if (adapters.Count == 0) throw new ArgumentException($"The {model.GetType().Name} has no LoRA adapters to save (Lora.Apply adds them).", nameof(model));
        LoraLayer first = adapters.Values.First();
        if (adapters.Values.FirstOrDefault(a => a.Rank != first.Rank || a.Scaling != first.Scaling || a.Dropout != first.Dropout) is { } other)
        {
            throw new ArgumentException(
                $"PEFT's adapter_config.json holds one rank and scale; {first.Name} has r = {first.Rank}, scale {first.Scaling} and {other.Name} r = {other.Rank}, scale {other.Scaling}.", nameof(model));
        }
        ModelFamily family = ModelFamilies.Of(model);
        string architecture = family.ArchitectureToSave(model);
        WeightNameMapping mapping = family.Mapping(model, architecture);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var modules = new List<string>();
        var layouts = new HashSet<SourceLayout>();
        using var scope = NewDisposeScope();
        foreach ((string name, LoraLayer adapter) in adapters)
        {
            (string[] names, SourceLayout layout) = mapping.Describe(name + ".weight")
                ?? throw new ArgumentException($"{name} has no Hugging Face name in a {architecture}; its adapter cannot be written in PEFT's layout.", nameof(model));
            layouts.Add(layout == SourceLayout.Concatenated ? SourceLayout.Same : layout);
            Tensor a = adapter.A.weight!.detach().cpu(), b = adapter.B.weight!.detach().cpu();
            Tensor[] rows = layout == SourceLayout.Concatenated ? b.chunk(names.Length, 0) : [b];
            for (int i = 0; i < names.Length; i++)
            {
                string module = names[i][..^".weight".Length];
                modules.Add(module);
                tensors[$"{KeyPrefix}{module}.lora_A.weight"] = a.contiguous();
                tensors[$"{KeyPrefix}{module}.lora_B.weight"] = rows[i].contiguous();
            }
        }
        if (layouts.Count > 1)
        {
            throw new ArgumentException("PEFT's fan_in_fan_out is one setting; the adapted layers mix Conv1D ([in, out]) and Linear ([out, in]) weights in the Hugging Face model.", nameof(model));
        }
        // lora_alpha = scale × r makes PEFT's α / r the adapter's own scale, whether it was made as α / r or rsLoRA's α / √r.
        double alpha = first.Scaling * first.Rank;
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = TaskType(architecture),
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["revision"] = null,
            ["r"] = first.Rank,
            ["lora_alpha"] = alpha,
            ["lora_dropout"] = first.Dropout,
            ["target_modules"] = new JsonArray(modules.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
            ["fan_in_fan_out"] = layouts.Single() == SourceLayout.Transposed,
            ["bias"] = "none",
            ["use_rslora"] = false,
            ["use_dora"] = false,
            ["modules_to_save"] = null,
            ["init_lora_weights"] = true,
            ["inference_mode"] = true,
        };
        Directory.CreateDirectory(folder);
        SafetensorsFile.Write(Path.Combine(folder, WeightsFile), tensors);
        File.WriteAllText(Path.Combine(folder, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// Adds the adapters of a PEFT LoRA folder to <paramref name="model"/> (a reference model with the base weights
    /// loaded) and freezes everything else. Everything is read and checked before the model changes. A PEFT adapter on
    /// part of one of our fused layers (e.g. only <c>query</c> and <c>value</c> of BERT's three) becomes an adapter of
    /// rank (parts × r) on the fused layer whose missing parts are zero: the same update, exactly.
    /// </summary>
    /// <exception cref="InvalidDataException">The folder is not a PEFT LoRA adapter, or uses a setting this library does not apply (DoRA, biases, modules to save, rank or alpha patterns).</exception>
    /// <exception cref="ArgumentException">The adapter is for another base model: a key names a module the model does not have, or a shape differs (named); or the model already has adapters.</exception>
    public static LoraAdapters Load(nn.Module model, string folder)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string configPath = Path.Combine(folder, ConfigFile), weightsPath = Path.Combine(folder, WeightsFile);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{folder} has no {ConfigFile}; it is not a PEFT adapter folder.", configPath);
        if (!File.Exists(weightsPath)) throw new FileNotFoundException($"{folder} has no {WeightsFile}.", weightsPath);
        JsonObject config = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? throw new InvalidDataException($"{configPath} is not a JSON object.");
        string peftType = config["peft_type"]?.GetValue<string>() ?? "(none)";
        if (peftType != "LORA") throw new InvalidDataException($"{configPath}: peft_type is {peftType}; only LORA adapters are read.");
        Refuse(config, configPath, "use_dora", v => v.GetValueKind() == JsonValueKind.True, "DoRA");
        Refuse(config, configPath, "bias", v => v.GetValueKind() == JsonValueKind.String && v.GetValue<string>() != "none", "trained biases");
        Refuse(config, configPath, "modules_to_save", v => v is JsonArray { Count: > 0 }, "fully trained extra modules");
        Refuse(config, configPath, "rank_pattern", v => v is JsonObject { Count: > 0 }, "per-layer ranks");
        Refuse(config, configPath, "alpha_pattern", v => v is JsonObject { Count: > 0 }, "per-layer alphas");
        int r = config["r"]?.GetValue<int>() ?? 8;
        double alpha = config["lora_alpha"]?.GetValue<double>() ?? 8;
        double dropout = config["lora_dropout"]?.GetValue<double>() ?? 0;
        bool rankStabilized = config["use_rslora"]?.GetValue<bool>() ?? false;
        var options = new LoraOptions { Rank = r, Alpha = alpha, Dropout = dropout, RankStabilized = rankStabilized, Targets = ["(from " + folder + ")"] };
        options.Validate();

        Dictionary<string, Tensor> file = StateDictFile.Read(weightsPath);
        try
        {
            return Attach(model, file, options, weightsPath);
        }
        finally
        {
            foreach (Tensor t in file.Values) t.Dispose();
        }
    }

    private static LoraAdapters Attach(nn.Module model, Dictionary<string, Tensor> file, LoraOptions options, string source)
    {
        // key → (module without backbone prefix, A or B)
        ModelFamily family = ModelFamilies.Of(model);
        WeightNameMapping mapping = family.Mapping(model, family.ArchitectureToSave(model));
        var parts = new Dictionary<string, (Tensor? A, Tensor? B)>(StringComparer.Ordinal);
        foreach ((string key, Tensor value) in file)
        {
            string name = key.StartsWith(KeyPrefix, StringComparison.Ordinal) ? key[KeyPrefix.Length..] : key;
            name = name.Replace(".default.", ".", StringComparison.Ordinal);
            bool isA = name.EndsWith(".lora_A.weight", StringComparison.Ordinal), isB = name.EndsWith(".lora_B.weight", StringComparison.Ordinal);
            if (!isA && !isB) throw new InvalidDataException($"{source}: {key} is not a LoRA A or B matrix; only lora_A and lora_B weights are read.");
            string module = Core(name[..^".lora_A.weight".Length]);
            (Tensor? a, Tensor? b) = parts.GetValueOrDefault(module);
            parts[module] = isA ? (value, b) : (a, value);
        }
        if (parts.FirstOrDefault(p => p.Value.A is null || p.Value.B is null) is { Key: not null } half)
        {
            throw new InvalidDataException($"{source}: {half.Key} has lora_{(half.Value.A is null ? "B" : "A")} but not lora_{(half.Value.A is null ? "A" : "B")}.");
        }

        var plans = new List<(string Name, Linear Layer, Tensor A, Tensor B, int Rank)>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach ((string name, nn.Module module) in model.named_modules())
        {
            if (module is not Linear layer || mapping.Describe(name + ".weight") is not { } described) continue;
            string[] modules = described.Names.Select(n => Core(n[..^".weight".Length])).ToArray();
            if (!modules.Any(parts.ContainsKey)) continue;
            if (Lora.Of(layer) is not null) throw new ArgumentException($"{name} already has a LoRA adapter; load the adapter folder into a model without one.", nameof(model));
            long partOut = layer.out_features / modules.Length;
            var aParts = new List<Tensor>();
            var bParts = new List<Tensor>();
            for (int i = 0; i < modules.Length; i++)
            {
                if (!parts.TryGetValue(modules[i], out (Tensor? A, Tensor? B) ab))
                {
                    // A part PEFT did not adapt: a zero block.
                    aParts.Add(zeros(options.Rank, layer.in_features));
                    bParts.Add(zeros(partOut, options.Rank));
                    continue;
                }
                used.Add(modules[i]);
                Tensor a = ab.A!, b = ab.B!;
                if (!a.shape.SequenceEqual([options.Rank, layer.in_features]) || !b.shape.SequenceEqual([partOut, options.Rank]))
                {
                    throw new ArgumentException(
                        $"{source}: the adapter of {modules[i]} is A [{string.Join(", ", a.shape)}], B [{string.Join(", ", b.shape)}]; the model's {name} needs A [{options.Rank}, {layer.in_features}] and B [{partOut}, {options.Rank}] (r = {options.Rank}): it is an adapter for another base model.", nameof(model));
                }
                aParts.Add(a.to(ScalarType.Float32));
                bParts.Add(b.to(ScalarType.Float32));
            }
            if (modules.Length == 1) plans.Add((name, layer, aParts[0], bParts[0], options.Rank));
            else plans.Add((name, layer, cat(aParts, 0), BlockDiagonal(bParts), options.Rank * modules.Length));
        }
        string[] unknown = parts.Keys.Where(k => !used.Contains(k)).ToArray();
        if (unknown.Length > 0)
        {
            throw new ArgumentException(
                $"{source} adapts {string.Join(", ", unknown.Take(3))}{(unknown.Length > 3 ? $" and {unknown.Length - 3} more" : "")}, which the {model.GetType().Name} does not have: it is an adapter for another base model.", nameof(model));
        }

        foreach (Parameter p in model.parameters()) p.requires_grad_(false);
        var layers = new List<LoraLayer>();
        using (no_grad())
        {
            foreach ((string name, Linear layer, Tensor a, Tensor b, int rank) in plans)
            {
                LoraLayer adapter = Lora.Attach(name, layer, rank, options.Scaling, options.Dropout);
                adapter.A.weight!.copy_(a);
                adapter.B.weight!.copy_(b);
                layers.Add(adapter);
            }
        }
        options.Targets = [.. layers.Select(l => l.Name)];
        return new LoraAdapters(model, options, layers);
    }

    /// <summary>
    /// A Hugging Face module name without its backbone prefix: PEFT wraps whichever class was loaded, so one base model's
    /// adapters name <c>bert.encoder…</c> (BertForSequenceClassification) or <c>encoder…</c> (BertModel).
    /// </summary>
    private static string Core(string module)
    {
        foreach (string prefix in (string[])["transformer.", "bert.", "model."])
        {
            if (module.StartsWith(prefix, StringComparison.Ordinal)) return module[prefix.Length..];
        }
        return module;
    }

    /// <summary>[Σ out_i, Σ r_i] with each B_i on the diagonal: part i's rows see only part i's A.</summary>
    private static Tensor BlockDiagonal(List<Tensor> blocks)
    {
        long rows = blocks.Sum(b => b.shape[0]), columns = blocks.Sum(b => b.shape[1]);
        Tensor result = zeros(rows, columns);
        long row = 0, column = 0;
        foreach (Tensor block in blocks)
        {
            result[TensorIndex.Slice(row, row + block.shape[0]), TensorIndex.Slice(column, column + block.shape[1])] = block;
            row += block.shape[0];
            column += block.shape[1];
        }
        return result;
    }

    private static void Refuse(JsonObject config, string path, string field, Func<JsonNode, bool> used, string what)
    {
        if (config[field] is { } value && used(value)) throw new InvalidDataException($"{path}: {field} = {value.ToJsonString()} asks for {what}, which this library's LoRA does not apply.");
    }

    private static string? TaskType(string architecture) => architecture switch
    {
        "BertForSequenceClassification" => "SEQ_CLS",
        _ when architecture.EndsWith("ForCausalLM", StringComparison.Ordinal) || architecture.EndsWith("LMHeadModel", StringComparison.Ordinal) => "CAUSAL_LM",
        _ => null,
    };
}
