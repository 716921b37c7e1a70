using System.Text.Json;
using System.Text.Json.Nodes;

namespace KnowledgeDistillation.Remote.OpenAi;

/// <summary>
/// llama.cpp's <c>llama-server</c> read as a teacher through <c>POST /completion</c>, the endpoint where <c>n_probs</c>
/// is documented. Source for the layout: tools/server/README.md in the llama.cpp repository (a prompt may be an array
/// of token ids, with no BOS added; several prompts give an array of results; each result's
/// <c>completion_probabilities</c> holds, per generated token, <c>top_logprobs</c> of at most n_probs
/// <c>{id, token, bytes, logprob}</c>; with <c>post_sampling_probs</c> they become <c>top_probs</c> with <c>prob</c>,
/// computed after the sampler chain; <c>generation_settings</c> echoes the settings the server actually used).
/// </summary>
internal static class LlamaCppCompletions
{
    public const string Path = "completion";

    /// <summary>The settings that change the distribution, with the neutral value each must have in the echo.</summary>
    private static readonly (string Name, double Neutral, Func<double, bool> IsNeutral)[] Neutral =
    [
        ("temperature", 1.0, v => Math.Abs(v - 1) < 1e-6),
        ("dynatemp_range", 0.0, v => v == 0),
        ("top_k", 0, v => v <= 0),
        ("top_p", 1.0, v => Math.Abs(v - 1) < 1e-6),
        ("min_p", 0.0, v => v == 0),
        ("typical_p", 1.0, v => Math.Abs(v - 1) < 1e-6),
        ("repeat_penalty", 1.0, v => Math.Abs(v - 1) < 1e-6),
        ("presence_penalty", 0.0, v => v == 0),
        ("frequency_penalty", 0.0, v => v == 0),
        ("dry_multiplier", 0.0, v => v == 0),
        ("xtc_probability", 0.0, v => v == 0),
        ("mirostat", 0, v => v == 0),
    ];

    /// <summary>
    /// The request: every prefix of every sequence as a prompt of token ids (position t is predicted after tokens
    /// 0 … t), one token generated, k log-probabilities before sampling, every sampling setting neutral.
    /// </summary>
    public static byte[] Request(IReadOnlyList<long[]> sequences, int k)
    {
        var prompts = new JsonArray();
        foreach (long[] sequence in sequences)
        {
            for (int end = 1; end <= sequence.Length; end++) prompts.Add(new JsonArray(sequence.Take(end).Select(id => (JsonNode)JsonValue.Create(id)).ToArray()));
        }
        var body = new JsonObject
        {
            ["prompt"] = prompts,
            ["n_predict"] = 1,
            ["n_probs"] = k,
            ["post_sampling_probs"] = false,
            ["cache_prompt"] = true,
            ["stream"] = false,
        };
        foreach ((string name, double neutral, _) in Neutral) body[name] = neutral;
        return JsonSerializer.SerializeToUtf8Bytes(body);
    }

    /// <summary>The rows [sequence][position] of an answer: prompt b·L + t (in <c>index</c> order) gives position t of sequence b.</summary>
    /// <exception cref="InvalidDataException">The answer has the wrong number of results, a result lacks pre-sampling log-probabilities, the echoed settings are not neutral, or a row is refused by <see cref="LogprobRow.Of"/>.</exception>
    public static LogprobRow[][] Parse(ReadOnlySpan<byte> answer, IReadOnlyList<long[]> sequences, int k, long vocabulary, Func<string, int?>? tokenIdOf)
    {
        JsonNode? root = AnswerJson.Parse(answer, "llama.cpp");
        JsonObject[] results = root switch
        {
            JsonArray array => array.Select((r, i) => r as JsonObject ?? throw new InvalidDataException($"Result {i} of the llama.cpp answer is not an object.")).ToArray(),
            JsonObject single => [single],
            _ => throw new InvalidDataException("The llama.cpp answer is neither a result nor an array of results."),
        };
        int prompts = sequences.Sum(s => s.Length);
        if (results.Length != prompts) throw new InvalidDataException($"The llama.cpp answer has {results.Length} results; the request sent {prompts} prompts (one per prefix).");
        // Results carry the index of their prompt; order by it when present (the server may finish them out of order).
        if (results.All(r => r["index"] is JsonValue))
        {
            results = results.OrderBy(r => r["index"]!.GetValue<int>()).ToArray();
        }
        var rows = new LogprobRow[sequences.Count][];
        int next = 0;
        for (int b = 0; b < sequences.Count; b++)
        {
            rows[b] = new LogprobRow[sequences[b].Length];
            for (int t = 0; t < sequences[b].Length; t++)
            {
                string where = $"sequence {b}, position {t}";
                JsonObject result = results[next++];
                RequireNeutralSettings(result, where);
                JsonNode? first = (result["completion_probabilities"] ?? result["probs"])?[0];
                if (first?["top_probs"] is not null)
                {
                    throw new InvalidDataException(
                        $"The llama.cpp answer at {where} holds top_probs, probabilities after the sampler chain (post_sampling_probs): they are not the model's distribution and are refused.");
                }
                JsonArray entries = first?["top_logprobs"] as JsonArray
                    ?? throw new InvalidDataException($"The llama.cpp answer at {where} has no completion_probabilities[0].top_logprobs (was n_probs ignored, or is the server older than the top_logprobs layout?).");
                rows[b][t] = LogprobRow.Of(entries.Select(e => Entry(e, tokenIdOf, where)).ToList(), k, vocabulary, where);
            }
        }
        return rows;
    }

    private static void RequireNeutralSettings(JsonObject result, string where)
    {
        JsonObject settings = result["generation_settings"] as JsonObject
            ?? throw new InvalidDataException($"The llama.cpp answer at {where} has no generation_settings, so the sampling settings it used cannot be checked; refused.");
        if (settings["params"] is JsonObject nested) settings = nested;
        foreach ((string name, double neutral, Func<double, bool> isNeutral) in Neutral)
        {
            if (settings[name] is JsonValue value && value.TryGetValue(out double used) && !isNeutral(used))
            {
                throw new InvalidDataException(
                    $"The llama.cpp server computed the answer at {where} with {name} = {used}, not {neutral}: log-probabilities after a temperature, filter or penalty are not the model's distribution and are refused.");
            }
        }
        if (settings["post_sampling_probs"] is JsonValue post && post.TryGetValue(out bool on) && on)
        {
            throw new InvalidDataException($"The llama.cpp server used post_sampling_probs at {where}: probabilities after the sampler chain are refused.");
        }
        if (settings["logit_bias"] is JsonArray { Count: > 0 } or JsonObject { Count: > 0 })
        {
            throw new InvalidDataException($"The llama.cpp server applied a logit_bias at {where}: biased log-probabilities are refused.");
        }
    }

    private static (int, double) Entry(JsonNode? entry, Func<string, int?>? tokenIdOf, string where)
    {
        if (entry?["logprob"] is not JsonValue logprobValue || !logprobValue.TryGetValue(out double logprob))
        {
            throw new InvalidDataException($"An entry of the llama.cpp answer at {where} has no numeric logprob: {entry?.ToJsonString() ?? "null"}.");
        }
        if (entry["id"] is JsonValue idValue && idValue.TryGetValue(out int id)) return (id, logprob);
        string token = entry["token"]?.GetValue<string>() ?? throw new InvalidDataException($"An entry of the llama.cpp answer at {where} has neither an id nor a token.");
        int? mapped = tokenIdOf is null
            ? throw new InvalidDataException($"The llama.cpp answer names token \"{token}\" at {where} by its text only; set OpenAiTeacherOptions.TokenIdOf to map token texts to ids.")
            : tokenIdOf(token);
        return (mapped ?? throw new InvalidDataException($"The llama.cpp answer names token \"{token}\" at {where}, which TokenIdOf does not map to an id."), logprob);
    }
}
