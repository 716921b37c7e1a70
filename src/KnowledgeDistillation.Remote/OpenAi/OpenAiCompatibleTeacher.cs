using System.Net.Http.Headers;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Remote.OpenAi;

/// <summary>
/// A causal language model served by vLLM or llama.cpp, read as a top-k teacher: for every position of every
/// sequence, the k most probable next tokens and their log-probabilities at temperature 1, plus the tail mass, in the
/// layout a teacher cache holds (so soft-target terms at T = 1 read it like a <see cref="CachedTeacher{TInput}"/>).
/// Tokens go to the server as ids, so the student and the served model must share the tokenizer; for another tokenizer
/// use the cross-tokenizer objectives. Every request sets temperature 1 and switches off every sampling filter and
/// penalty explicitly; an answer that still shows a tempered, filtered or biased distribution is refused, never used.
/// Requests go round-robin over the replicas with retries and timeouts, as <see cref="RemoteTeacher{TInput}"/>'s do.
/// </summary>
/// <typeparam name="TInput">The batch type; <c>tokens</c> gives its <see cref="TokenBatch"/> (right-padded).</typeparam>
public sealed class OpenAiCompatibleTeacher<TInput> : IDistillationModel<TInput>, IDevicePlacement, ITopKTeacher, IDisposable
{
    private readonly OpenAiTeacherOptions _options;
    private readonly Func<TInput, TokenBatch> _tokens;
    private readonly TeacherHttp _http;
    private Device _device = CPU;

    /// <summary>Creates the teacher; nothing is sent until the first batch.</summary>
    /// <param name="options">The server, the model, k and the vocabulary size.</param>
    /// <param name="tokens">A batch's tokens, as the served model reads them.</param>
    /// <param name="handler">The HTTP handler (default: a <see cref="SocketsHttpHandler"/>); owned by the teacher.</param>
    /// <exception cref="ArgumentException">An option is not usable (<see cref="OpenAiTeacherOptions.Validate"/>).</exception>
    public OpenAiCompatibleTeacher(OpenAiTeacherOptions options, Func<TInput, TokenBatch> tokens, HttpMessageHandler? handler = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _tokens = tokens ?? throw new ArgumentNullException(nameof(tokens));
        _http = new TeacherHttp(options, handler);
    }

    /// <summary>Top-k targets.</summary>
    public ModelOutputKinds Provides => ModelOutputKinds.TopKTargets;

    /// <summary>1: the log-probabilities are the model's own; a soft-target term must use T = 1 with this teacher.</summary>
    public double TopKTemperature => 1.0;

    /// <summary>Attempts retried so far (any replica, any reason).</summary>
    public long Retries => _http.Retries;

    /// <inheritdoc />
    public void PlaceOn(Device device) => _device = device ?? throw new ArgumentNullException(nameof(device));

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The request asks for hidden states or attention, which a served model does not send.</exception>
    /// <exception cref="ArgumentException">The batch's attention mask is not right padding (ones, then zeros), or a sequence is empty.</exception>
    /// <exception cref="InvalidOperationException">The server refused the batch (4xx, with its message) or every attempt failed.</exception>
    /// <exception cref="InvalidDataException">The answer is not in the server's layout, or holds log-probabilities that are refused (see <see cref="OpenAiCompatibleTeacher{TInput}"/>).</exception>
    public ModelOutput Run(TInput input, OutputRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.HiddenStates || request.AnyAttention || request.QueryKeyValues)
        {
            throw new NotSupportedException($"An OpenAI-compatible teacher sends only log-probabilities; the objective asks it for {request}. Use an in-process teacher for hidden-state and attention terms.");
        }
        TokenBatch tokens = _tokens(input);
        IReadOnlyList<long[]> sequences = Sequences(tokens);
        bool vllm = _options.Server == OpenAiCompatibleServer.Vllm;
        byte[] body = vllm ? VllmCompletions.Request(_options.Model!, sequences, _options.TopK) : LlamaCppCompletions.Request(sequences, _options.TopK);
        using HttpResponseMessage response = _http.Send(e =>
        {
            var message = new HttpRequestMessage(HttpMethod.Post, new Uri(e, vllm ? VllmCompletions.Path : LlamaCppCompletions.Path)) { Content = new ByteArrayContent(body) };
            message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            return message;
        }, out Uri endpoint);
        byte[] answer = response.Content.ReadAsByteArrayAsync().GetAwaiter().GetResult();
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"The {_options.Server} server at {endpoint} answered {(int)response.StatusCode} {response.ReasonPhrase}: {System.Text.Encoding.UTF8.GetString(answer)}");
        }
        LogprobRow[][] rows;
        try
        {
            rows = vllm
                ? VllmCompletions.Parse(answer, sequences, _options.TopK, _options.VocabularySize, _options.TokenIdOf)
                : LlamaCppCompletions.Parse(answer, sequences, _options.TopK, _options.VocabularySize, _options.TokenIdOf);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{e.Message} (server {endpoint})", e);
        }
        return new ModelOutput(LogprobRow.ToTargets(rows, _options.TopK, _options.VocabularySize, tokens.InputIds.shape[1], _device));
    }

    /// <summary>
    /// This teacher, recorded into a teacher cache at <paramref name="cachePath"/> during the first (in-order) pass over
    /// <paramref name="examples"/> examples and read from it afterwards (<see cref="RecordingTeacher{TInput}"/>).
    /// </summary>
    public RecordingTeacher<TInput> RecordingTo(string cachePath, long examples, Func<TInput, Tensor> exampleIndices) =>
        new(this, cachePath, examples, _options.VocabularySize, exampleIndices);

    /// <summary>Each sequence's real tokens: the ids where the attention mask is 1, which must be a prefix.</summary>
    private static IReadOnlyList<long[]> Sequences(TokenBatch tokens)
    {
        Tensor ids = tokens.InputIds;
        if (ids.dim() != 2) throw new ArgumentException($"InputIds must be [batch, length]; got [{string.Join(", ", ids.shape)}].", nameof(tokens));
        long[] all = ids.to(ScalarType.Int64).cpu().data<long>().ToArray();
        long length = ids.shape[1];
        long[]? mask = tokens.AttentionMask?.to(ScalarType.Int64).cpu().data<long>().ToArray();
        var sequences = new List<long[]>();
        for (long b = 0; b < ids.shape[0]; b++)
        {
            long real = length;
            if (mask is not null)
            {
                real = 0;
                while (real < length && mask[b * length + real] != 0) real++;
                for (long t = real; t < length; t++)
                {
                    if (mask[b * length + t] != 0)
                    {
                        throw new ArgumentException($"AttentionMask row {b} is not right padding: position {t} is 1 after a 0 at position {real}. A served model reads each sequence's tokens from the start.", nameof(tokens));
                    }
                }
            }
            if (real == 0) throw new ArgumentException($"Sequence {b} of the batch is empty (its attention mask is all 0).", nameof(tokens));
            sequences.Add(all.AsSpan((int)(b * length), (int)real).ToArray());
        }
        return sequences;
    }

    /// <summary>Closes the HTTP connections.</summary>
    public void Dispose() => _http.Dispose();
}

/// <summary>Creates OpenAI-compatible teachers for token batches.</summary>
public static class OpenAiCompatibleTeacher
{
    /// <summary>An OpenAI-compatible teacher whose batches are <see cref="TokenBatch"/>es.</summary>
    public static OpenAiCompatibleTeacher<TokenBatch> ForTokens(OpenAiTeacherOptions options, HttpMessageHandler? handler = null) => new(options, b => b, handler);
}
