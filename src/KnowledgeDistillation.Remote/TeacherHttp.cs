using System.Net;
using System.Net.Http.Headers;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace KnowledgeDistillation.Remote;

/// <summary>
/// The HTTP side every remote teacher shares: one connection pool, requests spread round-robin over the replicas, and a
/// Polly pipeline that retries a failed or slow attempt (connection refused or cut, 5xx, 429, timeout) on the next
/// replica with exponential backoff. A 4xx is the request's fault and is returned to the caller, not retried.
/// </summary>
internal sealed class TeacherHttp : IDisposable
{
    private readonly TeacherConnectionOptions _options;
    private readonly HttpClient _http;
    private readonly ResiliencePipeline<HttpResponseMessage> _pipeline;
    private long _next, _retries;

    public TeacherHttp(TeacherConnectionOptions options, HttpMessageHandler? handler)
    {
        _options = options;
        _http = new HttpClient(handler ?? new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = Timeout.InfiniteTimeSpan };
        var pipeline = new ResiliencePipelineBuilder<HttpResponseMessage>();
        if (options.MaxRetries > 0)
        {
            pipeline.AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>()
                    .Handle<TimeoutRejectedException>()
                    .Handle<IOException>()
                    .Handle<TaskCanceledException>()
                    .HandleResult(r => (int)r.StatusCode >= 500 || r.StatusCode == HttpStatusCode.TooManyRequests),
                MaxRetryAttempts = options.MaxRetries,
                Delay = options.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                MaxDelay = TimeSpan.FromSeconds(5),
                OnRetry = args =>
                {
                    args.Outcome.Result?.Dispose();
                    Interlocked.Increment(ref _retries);
                    return default;
                },
            });
        }
        // The timeout is inside the retry: it bounds one attempt, and a timed-out attempt is retried on the next replica.
        _pipeline = pipeline.AddTimeout(options.AttemptTimeout).Build();
    }

    /// <summary>Attempts retried so far (any replica, any reason).</summary>
    public long Retries => Interlocked.Read(ref _retries);

    /// <summary>Sends what <paramref name="request"/> builds to <paramref name="endpoint"/>, retrying there.</summary>
    public HttpResponseMessage SendTo(Uri endpoint, Func<Uri, HttpRequestMessage> request) => _pipeline.Execute(token =>
    {
        using HttpRequestMessage message = request(endpoint);
        Authorize(message);
        return _http.Send(message, HttpCompletionOption.ResponseContentRead, token);
    });

    /// <summary>Sends what <paramref name="request"/> builds to the next replica, each retry to the one after; <paramref name="endpoint"/> is the last tried.</summary>
    public HttpResponseMessage Send(Func<Uri, HttpRequestMessage> request, out Uri endpoint)
    {
        Uri? last = null;
        HttpResponseMessage response = _pipeline.Execute(token =>
        {
            last = _options.Endpoints[(int)((Interlocked.Increment(ref _next) - 1) % _options.Endpoints.Count)];
            using HttpRequestMessage message = request(last);
            Authorize(message);
            return _http.Send(message, HttpCompletionOption.ResponseContentRead, token);
        });
        endpoint = last!;
        return response;
    }

    private void Authorize(HttpRequestMessage request)
    {
        if (_options.ApiKey is { } key) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
    }

    public void Dispose() => _http.Dispose();
}
