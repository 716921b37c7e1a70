using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace KnowledgeDistillation.Remote.OpenAi;

/// <summary>
/// vLLM's <c>POST /v1/completions</c> read as a teacher. Where the layout comes from, in the vLLM repository:
/// tests/entrypoints/openai/completion/test_completion.py (a prompt may be a list of token-id lists, one choice per
/// prompt, in order of <c>index</c>; <c>prompt_logprobs</c> is an extra body field answered in each choice; a generated
/// token's <c>top_logprobs</c> holds k or k + 1 entries, the sampled token added), tests/entrypoints/openai/completion/
/// test_completion_logprobs.py (per position, a map from token id to <c>{logprob, rank, decoded_token}</c>) and the
/// serving code vllm/entrypoints/openai/serving_engine.py (the first prompt token has no entry; −∞ is written as
/// −9999; <c>return_tokens_as_token_ids</c> names a generated token's alternatives <c>token_id:N</c>).
/// </summary>
internal static class VllmCompletions
{
    public const string Path = "v1/completions";

    /// <summary>
    /// The request: every sequence a prompt of token ids, one generated token, and every sampling setting at its neutral
    /// value (temperature 1, no top-k/top-p/min-p, no penalties), sent explicitly so that neither vLLM's defaults nor a
    /// model's generation_config.json can temper or filter the log-probabilities.
    /// </summary>
    public static byte[] Request(string model, IReadOnlyList<long[]> sequences, int k)
    {
        var prompts = new JsonArray();
        foreach (long[] sequence in sequences) prompts.Add(new JsonArray(sequence.Select(id => (JsonNode)JsonValue.Create(id)).ToArray()));
        var body = new JsonObject
        {
            ["model"] = model,
            ["prompt"] = prompts,
            ["max_tokens"] = 1,
            ["n"] = 1,
            ["temperature"] = 1.0,
            ["top_p"] = 1.0,
            ["top_k"] = -1,
            ["min_p"] = 0.0,
            ["repetition_penalty"] = 1.0,
            ["presence_penalty"] = 0.0,
            ["frequency_penalty"] = 0.0,
            ["logprobs"] = k,
            ["prompt_logprobs"] = k,
            ["return_tokens_as_token_ids"] = true,
            ["stream"] = false,
        };
        return JsonSerializer.SerializeToUtf8Bytes(body);
    }

    /// <summary>
    /// The rows [sequence][position] of an answer: position t &lt; L − 1 from <c>prompt_logprobs[t + 1]</c> (the
    /// distribution that scored token t + 1 given tokens 0 … t), position L − 1 from the generated token's top_logprobs.
    /// </summary>
    /// <exception cref="InvalidDataException">The answer lacks a choice or its log-probabilities, has the wrong length, names an unknown token, or a row is refused by <see cref="LogprobRow.Of"/>.</exception>
    public static LogprobRow[][] Parse(ReadOnlySpan<byte> answer, IReadOnlyList<long[]> sequences, int k, long vocabulary, Func<string, int?>? tokenIdOf)
    {
        JsonNode? root = AnswerJson.Parse(answer, "vLLM");
        JsonArray choices = root?["choices"] as JsonArray ?? throw new InvalidDataException("The vLLM answer has no \"choices\" array.");
        var byIndex = new Dictionary<int, JsonObject>();
        foreach (JsonNode? choice in choices)
        {
            if (choice is JsonObject o && o["index"] is JsonValue index && index.TryGetValue(out int i)) byIndex[i] = o;
        }
        var rows = new LogprobRow[sequences.Count][];
        for (int b = 0; b < sequences.Count; b++)
        {
            if (!byIndex.TryGetValue(b, out JsonObject? choice)) throw new InvalidDataException($"The vLLM answer has no choice with index {b} (for sequence {b}); it has {choices.Count} choices.");
            int length = sequences[b].Length;
            rows[b] = new LogprobRow[length];
            if (length > 1)
            {
                JsonArray prompt = choice["prompt_logprobs"] as JsonArray
                    ?? throw new InvalidDataException($"Choice {b} of the vLLM answer has no prompt_logprobs: the server ignored the prompt_logprobs field (is it vLLM?).");
                if (prompt.Count != length)
                {
                    throw new InvalidDataException($"Choice {b} of the vLLM answer has {prompt.Count} prompt_logprobs entries; the sequence has {length} tokens.");
                }
                for (int t = 0; t < length - 1; t++)
                {
                    string where = $"sequence {b}, position {t}";
                    JsonObject entries = prompt[t + 1] as JsonObject ?? throw new InvalidDataException($"The vLLM answer has no prompt log-probabilities for token {t + 1} of sequence {b}.");
                    rows[b][t] = LogprobRow.Of(entries.Select(e => (TokenId(e.Key, tokenIdOf, where), Logprob(e.Value, where))).ToList(), k, vocabulary, where);
                }
            }
            string last = $"sequence {b}, position {length - 1}";
            JsonObject generated = choice["logprobs"]?["top_logprobs"]?[0] as JsonObject
                ?? throw new InvalidDataException($"Choice {b} of the vLLM answer has no logprobs.top_logprobs[0] for the generated token (the distribution after the last prompt token).");
            rows[b][length - 1] = LogprobRow.Of(generated.Select(e => (TokenId(e.Key, tokenIdOf, last), Logprob(e.Value, last))).ToList(), k, vocabulary, last);
        }
        return rows;
    }

    /// <summary>A token key: an id (prompt_logprobs), <c>token_id:N</c> (return_tokens_as_token_ids), or text mapped by <paramref name="tokenIdOf"/>.</summary>
    private static int TokenId(string key, Func<string, int?>? tokenIdOf, string where)
    {
        if (int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out int id)) return id;
        if (key.StartsWith("token_id:", StringComparison.Ordinal) && int.TryParse(key.AsSpan(9), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out id)) return id;
        if (tokenIdOf is null)
        {
            throw new InvalidDataException(
                $"The vLLM answer names token \"{key}\" at {where} by its text; set OpenAiTeacherOptions.TokenIdOf to map token texts to ids (or use a vLLM that honours return_tokens_as_token_ids).");
        }
        return tokenIdOf(key) ?? throw new InvalidDataException($"The vLLM answer names token \"{key}\" at {where}, which TokenIdOf does not map to an id.");
    }

    /// <summary>A log-probability: a number (generated top_logprobs) or an object's <c>logprob</c> (prompt_logprobs).</summary>
    private static double Logprob(JsonNode? value, string where)
    {
        JsonNode? number = value is JsonObject o ? o["logprob"] : value;
        if (number is JsonValue v && v.TryGetValue(out double logprob)) return logprob;
        throw new InvalidDataException($"The vLLM answer has no numeric log-probability at {where}: {value?.ToJsonString() ?? "null"}.");
    }
}
