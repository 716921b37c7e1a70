using System.Text.Json.Nodes;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Remote.OpenAi;

/// <summary>What a fake server does differently from a faithful one, to see each refusal.</summary>
internal sealed record FakeBehaviour
{
    /// <summary>vLLM: tokens past this rank get −9999, as a server-side top-k filter leaves them.</summary>
    public int? FilterAfterRank { get; init; }

    /// <summary>llama.cpp: the temperature the server uses (and echoes) whatever the request says.</summary>
    public double? ForcedTemperature { get; init; }

    /// <summary>llama.cpp: answer post-sampling <c>top_probs</c> instead of <c>top_logprobs</c>.</summary>
    public bool PostSamplingProbs { get; init; }

    /// <summary>vLLM: name the generated token's alternatives by text (as without return_tokens_as_token_ids).</summary>
    public bool TokensAsText { get; init; }
}

/// <summary>
/// Stand-ins for vLLM's and llama.cpp's servers on a loopback port: a TinyGpt answers in each server's documented layout
/// (vLLM: tests/entrypoints/openai/completion/test_completion.py and serving_engine.py; llama.cpp: tools/server/README.md).
/// Neither server can run on this machine (no GPU, no model hub, neither is packaged for Debian 12), so these fakes are
/// written from those documents, not from the client under test.
/// </summary>
internal sealed class FakeOpenAiServer : IAsyncDisposable
{
    public const string ModelName = "tiny-gpt-teacher", ApiKey = "fake-key";
    private readonly WebApplication _app;
    private int _requests;

    private FakeOpenAiServer(WebApplication app, Uri url)
    {
        _app = app;
        Url = url;
    }

    public Uri Url { get; }

    public int Requests => _requests;

    /// <summary>The prompts of the last request, as token ids.</summary>
    public List<long[]> LastPrompts { get; private set; } = [];

    public static FakeOpenAiServer Vllm(GptModel teacher, FakeBehaviour? behaviour = null) => Start(teacher, behaviour ?? new(), vllm: true);

    public static FakeOpenAiServer LlamaCpp(GptModel teacher, FakeBehaviour? behaviour = null) => Start(teacher, behaviour ?? new(), vllm: false);

    private static FakeOpenAiServer Start(GptModel teacher, FakeBehaviour behaviour, bool vllm)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        WebApplication app = builder.Build();
        FakeOpenAiServer? server = null;
        var gate = new object();
        app.MapPost(vllm ? "/v1/completions" : "/completion", async (HttpContext context) =>
        {
            Interlocked.Increment(ref server!._requests);
            if (vllm && context.Request.Headers.Authorization != $"Bearer {ApiKey}")
            {
                return Results.Json(new { error = "Unauthorized" }, statusCode: 401);
            }
            JsonNode body = (await JsonNode.ParseAsync(context.Request.Body))!;
            List<long[]> prompts = ((JsonArray)body["prompt"]!).Select(p => ((JsonArray)p!).Select(id => id!.GetValue<long>()).ToArray()).ToList();
            server.LastPrompts = prompts;
            lock (gate)
            {
                if (!vllm) return Results.Json(LlamaCppAnswer(teacher, behaviour, body, prompts));
                if (body["model"]?.GetValue<string>() != ModelName)
                {
                    return Results.Json(new { @object = "error", message = $"The model `{body["model"]}` does not exist.", type = "NotFoundError", code = 404 }, statusCode: 404);
                }
                return Results.Json(VllmAnswer(teacher, behaviour, body, prompts));
            }
        });
        app.StartAsync().GetAwaiter().GetResult();
        server = new FakeOpenAiServer(app, new Uri(app.Urls.Single().TrimEnd('/') + "/"));
        return server;
    }

    /// <summary>The teacher's log-probabilities [L, V] for one prompt, in double, from its float32 softmax.</summary>
    public static double[][] LogProbabilities(GptModel teacher, long[] prompt)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        Tensor logits = teacher.Run(new TokenBatch(tensor(prompt).unsqueeze(0)), new OutputRequest()).Logits[0];
        float[] p = logits.to(ScalarType.Float32).softmax(-1).data<float>().ToArray();
        long v = logits.shape[1];
        return Enumerable.Range(0, prompt.Length).Select(t => Enumerable.Range(0, (int)v).Select(c => Math.Log(p[t * v + c])).ToArray()).ToArray();
    }

    private static int[] Ranked(double[] logprobs) => Enumerable.Range(0, logprobs.Length).OrderByDescending(c => logprobs[c]).ThenBy(c => c).ToArray();

    private static JsonObject VllmAnswer(GptModel teacher, FakeBehaviour behaviour, JsonNode body, List<long[]> prompts)
    {
        int k = body["prompt_logprobs"]!.GetValue<int>(), generatedK = body["logprobs"]!.GetValue<int>();
        var choices = new JsonArray();
        for (int i = 0; i < prompts.Count; i++)
        {
            double[][] logp = LogProbabilities(teacher, prompts[i]);
            if (behaviour.FilterAfterRank is int keep)
            {
                foreach (double[] row in logp)
                {
                    int[] order = Ranked(row);
                    for (int r = keep; r < order.Length; r++) row[order[r]] = -9999.0;
                }
            }
            var promptLogprobs = new JsonArray { null };
            for (int t = 1; t < prompts[i].Length; t++)
            {
                // The distribution that scored token t: position t − 1's; its top k, plus the prompt token itself.
                int[] order = Ranked(logp[t - 1]);
                var entry = new JsonObject();
                foreach (int c in order.Take(k).Append((int)prompts[i][t]).Distinct())
                {
                    entry[$"{c}"] = new JsonObject { ["logprob"] = logp[t - 1][c], ["rank"] = Array.IndexOf(order, c) + 1, ["decoded_token"] = $"t{c}" };
                }
                promptLogprobs.Add(entry);
            }
            double[] last = logp[^1];
            int[] lastOrder = Ranked(last);
            int sampled = lastOrder[^1]; // the least probable token "sampled", so the top-k gets it as an extra entry (k + 1)
            var top = new JsonObject();
            foreach (int c in lastOrder.Take(generatedK).Append(sampled))
            {
                top[behaviour.TokensAsText ? $"t{c}" : $"token_id:{c}"] = last[c];
            }
            choices.Add(new JsonObject
            {
                ["index"] = i,
                ["text"] = $"t{sampled}",
                ["logprobs"] = new JsonObject { ["tokens"] = new JsonArray($"token_id:{sampled}"), ["token_logprobs"] = new JsonArray(last[sampled]), ["top_logprobs"] = new JsonArray(top), ["text_offset"] = new JsonArray(0) },
                ["finish_reason"] = "length",
                ["prompt_logprobs"] = promptLogprobs,
            });
        }
        return new JsonObject { ["id"] = "cmpl-fake", ["object"] = "text_completion", ["model"] = ModelName, ["choices"] = choices };
    }

    private static JsonArray LlamaCppAnswer(GptModel teacher, FakeBehaviour behaviour, JsonNode body, List<long[]> prompts)
    {
        int k = body["n_probs"]!.GetValue<int>();
        var settings = new JsonObject();
        foreach (string name in new[] { "temperature", "dynatemp_range", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "dry_multiplier", "xtc_probability", "mirostat" })
        {
            settings[name] = body[name]?.DeepClone();
        }
        if (behaviour.ForcedTemperature is double forced) settings["temperature"] = forced;
        settings["n_probs"] = k;
        settings["post_sampling_probs"] = behaviour.PostSamplingProbs;
        var results = new List<JsonObject>();
        for (int i = 0; i < prompts.Count; i++)
        {
            double[] last = LogProbabilities(teacher, prompts[i])[^1];
            double temperature = settings["temperature"]!.GetValue<double>();
            if (temperature != 1.0)
            {
                double norm = Math.Log(last.Sum(l => Math.Exp(l / temperature)));
                last = last.Select(l => l / temperature - norm).ToArray();
            }
            int[] order = Ranked(last);
            var alternatives = new JsonArray();
            foreach (int c in order.Take(k))
            {
                JsonObject entry = new() { ["id"] = c, ["token"] = $"t{c}", ["bytes"] = new JsonArray(116) };
                entry[behaviour.PostSamplingProbs ? "prob" : "logprob"] = behaviour.PostSamplingProbs ? Math.Exp(last[c]) : last[c];
                alternatives.Add(entry);
            }
            var probability = new JsonObject { ["id"] = order[0], ["token"] = $"t{order[0]}", ["bytes"] = new JsonArray(116) };
            probability[behaviour.PostSamplingProbs ? "prob" : "logprob"] = behaviour.PostSamplingProbs ? Math.Exp(last[order[0]]) : last[order[0]];
            probability[behaviour.PostSamplingProbs ? "top_probs" : "top_logprobs"] = alternatives;
            results.Add(new JsonObject
            {
                ["index"] = i,
                ["content"] = $"t{order[0]}",
                ["tokens"] = new JsonArray(),
                ["stop"] = true,
                ["model"] = "tiny-gpt.gguf",
                ["generation_settings"] = settings.DeepClone(),
                ["completion_probabilities"] = new JsonArray(probability),
                ["stop_type"] = "limit",
                ["tokens_evaluated"] = prompts[i].Length,
            });
        }
        // Finished out of order, as parallel slots may; each result carries its prompt's index.
        results.Reverse();
        return new JsonArray(results.ToArray<JsonNode>());
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
