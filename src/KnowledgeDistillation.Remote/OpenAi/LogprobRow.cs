using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Remote.OpenAi;

/// <summary>One position's k most probable next tokens and their log-probabilities, largest first, as a server answered them.</summary>
internal sealed record LogprobRow(int[] Ids, double[] Logprobs)
{
    /// <summary>
    /// vLLM writes a log-probability of −∞ (a token a sampling filter or a logit bias removed) as −9999
    /// (<c>clamp_prompt_logprobs</c> in vllm/entrypoints/openai/serving_engine.py); anything at or below it is such a token.
    /// </summary>
    private const double Removed = -9999.0;

    /// <summary>
    /// The <paramref name="k"/> most probable of <paramref name="entries"/> (ties to the smaller id), checked to be one
    /// untempered, unfiltered distribution's log-probabilities over <paramref name="vocabulary"/> tokens.
    /// </summary>
    /// <param name="entries">The (token id, log-probability) pairs the server answered for the position.</param>
    /// <param name="k">How many to keep.</param>
    /// <param name="vocabulary">The vocabulary size; ids must be below it.</param>
    /// <param name="where">Names the position in messages, e.g. "sequence 2, position 5".</param>
    /// <exception cref="InvalidDataException">Too few entries, an id out of range or repeated, a log-probability that is not finite and ≤ 0, a removed token among the top k, or a total above 1.</exception>
    public static LogprobRow Of(IReadOnlyList<(int Id, double Logprob)> entries, int k, long vocabulary, string where)
    {
        if (entries.Count < k)
        {
            throw new InvalidDataException(
                $"The server answered {entries.Count} log-probabilities at {where}; TopK = {k} needs {k} (raise vLLM's --max-logprobs, or lower TopK).");
        }
        var seen = new HashSet<int>();
        foreach ((int id, double logprob) in entries)
        {
            if (id < 0 || id >= vocabulary) throw new InvalidDataException($"The server answered token id {id} at {where}; the vocabulary has {vocabulary} tokens (ids 0 … {vocabulary - 1}).");
            if (!seen.Add(id)) throw new InvalidDataException($"The server answered token id {id} twice at {where}.");
            if (double.IsNaN(logprob) || logprob > 1e-6) throw new InvalidDataException($"The server answered log-probability {logprob} for token {id} at {where}; a log-probability is ≤ 0.");
        }
        (int Id, double Logprob)[] top = entries.OrderByDescending(e => e.Logprob).ThenBy(e => e.Id).Take(k).ToArray();
        if (top[^1].Logprob <= Removed)
        {
            throw new InvalidDataException(
                $"Token {top[^1].Id} at {where} has log-probability {top[^1].Logprob}, the mark of a token removed by a sampling filter (top-k, top-p, min-p) or a logit bias: " +
                "these log-probabilities are not the model's distribution and are refused. Serve the model without default sampling filters or logit biases.");
        }
        double total = top.Sum(e => Math.Exp(e.Logprob));
        if (total > 1 + 1e-4)
        {
            throw new InvalidDataException($"The top {k} probabilities at {where} add up to {total:G6}, more than 1: they are not one distribution's log-probabilities.");
        }
        return new LogprobRow(top.Select(e => e.Id).ToArray(), top.Select(e => Math.Min(e.Logprob, 0)).ToArray());
    }

    /// <summary>
    /// Top-k targets at temperature 1 from rows [sequence][position]: the k probabilities exp(log p) and the tail mass
    /// 1 − Σ p, computed in double. Positions past a sequence's length (padding) get no classes and the whole mass in the tail.
    /// </summary>
    public static TopKTargets ToTargets(IReadOnlyList<LogprobRow[]> rows, int k, long vocabulary, long positions, Device device)
    {
        int sequences = rows.Count;
        var probabilities = new float[sequences * positions * (k + 1)];
        var ids = new long[sequences * positions * k];
        for (int b = 0; b < sequences; b++)
        {
            for (long t = 0; t < positions; t++)
            {
                long cell = b * positions + t;
                if (t >= rows[b].Length)
                {
                    probabilities[cell * (k + 1) + k] = 1f;
                    continue;
                }
                LogprobRow row = rows[b][t];
                double kept = 0;
                for (int j = 0; j < k; j++)
                {
                    double p = Math.Exp(row.Logprobs[j]);
                    kept += p;
                    probabilities[cell * (k + 1) + j] = (float)p;
                    ids[cell * k + j] = row.Ids[j];
                }
                // Every class kept: the tail is exactly 0, as TopKTargets.FromLogits makes it.
                probabilities[cell * (k + 1) + k] = k == vocabulary ? 0f : (float)Math.Max(0, 1 - kept);
            }
        }
        // Built on the host; moved once, the host copies freed at once rather than left to the finalizer.
        using var scope = NewDisposeScope();
        return new TopKTargets(
            tensor(probabilities, [sequences, positions, k + 1]).to(device).MoveToOuterDisposeScope(),
            tensor(ids, [sequences, positions, k]).to(device).MoveToOuterDisposeScope(),
            temperature: 1.0);
    }
}
