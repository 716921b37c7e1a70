using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Remote;

/// <summary>
/// A teacher that runs on a teacher server (KnowledgeDistillation.Serving), possibly several replicas of it: each batch's
/// tokens go to the next replica in turn, and its top-k targets (or values) come back in the layout a teacher cache
/// holds, so the trainer uses it like a <see cref="CachedTeacher{TInput}"/>. A failed or slow attempt (connection
/// refused or cut, a 5xx or 429, no answer within <see cref="TeacherConnectionOptions.AttemptTimeout"/>) is retried on the
/// next replica with exponential backoff (Polly); a 4xx is the request's fault and fails at once with the server's
/// message. Every replica must serve the same teacher: <see cref="Connect"/> compares their fingerprints, and every
/// answer carries the fingerprint of the teacher that computed it, which must be that one.
/// </summary>
/// <typeparam name="TInput">The batch type; <c>tokens</c> gives its <see cref="TokenBatch"/>.</typeparam>
public sealed class RemoteTeacher<TInput> : IDistillationModel<TInput>, IDevicePlacement, ITopKTeacher, IDisposable
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    private readonly RemoteTeacherOptions _options;
    private readonly Func<TInput, TokenBatch> _tokens;
    private readonly TeacherHttp _http;
    private TeacherDescription? _description;
    private Device _device = CPU;

    /// <summary>Creates the teacher; nothing is sent until <see cref="Connect"/> or the first batch.</summary>
    /// <param name="options">The replicas and the failure handling.</param>
    /// <param name="tokens">A batch's tokens, as the teacher reads them.</param>
    /// <param name="handler">The HTTP handler (default: a <see cref="SocketsHttpHandler"/>); owned by the teacher.</param>
    /// <exception cref="ArgumentException">An option is not usable (<see cref="TeacherConnectionOptions.Validate"/>).</exception>
    public RemoteTeacher(RemoteTeacherOptions options, Func<TInput, TokenBatch> tokens, HttpMessageHandler? handler = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _tokens = tokens ?? throw new ArgumentNullException(nameof(tokens));
        _http = new TeacherHttp(options, handler);
    }

    /// <summary>What the replicas serve, once <see cref="Connect"/> has run (it runs before the first batch).</summary>
    public TeacherDescription? Description => _description;

    /// <summary>Attempts retried so far (any replica, any reason).</summary>
    public long Retries => _http.Retries;

    /// <summary>Top-k targets, or logits (the values) for a values server.</summary>
    public ModelOutputKinds Provides => Connect().Content == TeacherCacheContent.TopKProbabilities ? ModelOutputKinds.TopKTargets : ModelOutputKinds.Logits;

    /// <summary>The server's temperature (1 for a values server).</summary>
    public double TopKTemperature => Connect().Content == TeacherCacheContent.TopKProbabilities ? Connect().Temperature : 1.0;

    /// <inheritdoc />
    public void PlaceOn(Device device) => _device = device ?? throw new ArgumentNullException(nameof(device));

    /// <summary>
    /// Reads every replica's description and checks that all serve one teacher (the expected fingerprint when one is set).
    /// Runs once; later calls return the first answer.
    /// </summary>
    /// <exception cref="InvalidOperationException">A replica serves another teacher (it is named, with both fingerprints and settings), or one cannot be reached after the retries.</exception>
    public TeacherDescription Connect()
    {
        if (_description is not null) return _description;
        TeacherDescription? first = null;
        Uri? firstEndpoint = null;
        foreach (Uri endpoint in _options.Endpoints)
        {
            TeacherDescription description = Describe(endpoint);
            string? expected = _options.ExpectedFingerprint ?? first?.Fingerprint;
            if (expected is not null && description.Fingerprint != expected)
            {
                string against = _options.ExpectedFingerprint is not null ? "the expected fingerprint" : $"{firstEndpoint} ({first!.Model}, {first.Settings})";
                throw new InvalidOperationException(
                    $"The teacher server at {endpoint} serves {description.Model} ({description.Settings}) with fingerprint {description.Fingerprint}, " +
                    $"but {against} is {expected}: every replica must serve the same teacher with the same settings.");
            }
            first ??= description;
            firstEndpoint ??= endpoint;
        }
        _description = first;
        return first!;
    }

    private TeacherDescription Describe(Uri endpoint)
    {
        using HttpResponseMessage response = _http.SendTo(endpoint, e => new HttpRequestMessage(HttpMethod.Get, new Uri(e, "v1/teacher")));
        string body = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"The teacher server at {endpoint} answered {(int)response.StatusCode} to GET v1/teacher: {body}");
        return JsonSerializer.Deserialize<TeacherDescription>(body, Json) ?? throw new InvalidDataException($"The teacher server at {endpoint} sent an empty description.");
    }

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The request asks for hidden states or attention, which a served teacher does not send.</exception>
    /// <exception cref="InvalidOperationException">The server refused the batch (4xx, with its message), every attempt failed, or an answer came from another teacher.</exception>
    public ModelOutput Run(TInput input, OutputRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.HiddenStates || request.AnyAttention || request.QueryKeyValues)
        {
            throw new NotSupportedException($"A remote teacher sends only its outputs; the objective asks it for {request}. Use an in-process teacher for hidden-state and attention terms.");
        }
        TeacherDescription description = Connect();
        TokenBatch tokens = _tokens(input);
        byte[] body = TeacherWire.EncodeRequest(tokens);
        using HttpResponseMessage response = _http.Send(e =>
        {
            var message = new HttpRequestMessage(HttpMethod.Post, new Uri(e, "v1/outputs")) { Content = new ByteArrayContent(body) };
            message.Content.Headers.ContentType = new MediaTypeHeaderValue(TeacherWire.RequestContentType);
            return message;
        }, out Uri last);
        byte[] bytes = response.Content.ReadAsByteArrayAsync().GetAwaiter().GetResult();
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"The teacher server at {last} answered {(int)response.StatusCode} {response.ReasonPhrase}: {System.Text.Encoding.UTF8.GetString(bytes)}");
        }
        string? served = response.Headers.TryGetValues(TeacherWire.FingerprintHeader, out IEnumerable<string>? values) ? values.FirstOrDefault() : null;
        if (served != description.Fingerprint)
        {
            throw new InvalidOperationException(
                $"The teacher server at {last} answered with fingerprint {served ?? "(none)"}, not {description.Fingerprint} ({description.Model}, {description.Settings}): a replica now serves another teacher.");
        }
        ModelOutput output = TeacherWire.DecodeResponse(bytes, _device);
        long batch = tokens.InputIds.shape[0];
        long rows = tokens.InputIds.shape[1];
        Tensor shapeSource = output.TopK?.Indices ?? output.Logits;
        if (shapeSource.shape[0] != batch || (shapeSource.dim() == 3 && shapeSource.shape[1] != rows))
        {
            throw new InvalidDataException($"The teacher server at {last} answered for [{string.Join(", ", shapeSource.shape)}]; the batch is [{batch}, {rows}].");
        }
        return output;
    }

    /// <summary>
    /// This teacher, recorded into a teacher cache at <paramref name="cachePath"/> during the first (in-order) pass over
    /// <paramref name="examples"/> examples and read from it afterwards (<see cref="RecordingTeacher{TInput}"/>).
    /// </summary>
    public RecordingTeacher<TInput> RecordingTo(string cachePath, long examples, Func<TInput, Tensor> exampleIndices) =>
        new(this, cachePath, examples, Connect().Classes, exampleIndices);

    /// <summary>Closes the HTTP connections.</summary>
    public void Dispose() => _http.Dispose();
}

/// <summary>Creates remote teachers for token batches.</summary>
public static class RemoteTeacher
{
    /// <summary>A remote teacher whose batches are <see cref="TokenBatch"/>es.</summary>
    public static RemoteTeacher<TokenBatch> ForTokens(RemoteTeacherOptions options, HttpMessageHandler? handler = null) => new(options, b => b, handler);
}
