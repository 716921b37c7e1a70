namespace KnowledgeDistillation.Serving;

/// <summary>
/// What the server has done, as <c>GET /metrics</c> reports it (JSON): requests answered and refused, sequences and rows
/// answered, forward passes and the requests they merged, and the latency percentiles of the last 4,096 answered requests.
/// Thread-safe.
/// </summary>
public sealed class TeacherServerMetrics
{
    private const int Window = 4096;
    private readonly double[] _latencies = new double[Window];
    private readonly object _gate = new();
    private long _latencyCount;
    private long _requests, _sequences, _tokens, _batches, _batchedRequests, _clientErrors, _serverErrors, _rejected;

    internal void Answered(long sequences, long tokens, double milliseconds)
    {
        Interlocked.Increment(ref _requests);
        Interlocked.Add(ref _sequences, sequences);
        Interlocked.Add(ref _tokens, tokens);
        lock (_gate) _latencies[_latencyCount++ % Window] = milliseconds;
    }

    internal void Batch(int requests)
    {
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _batchedRequests, requests);
    }

    internal void ClientError() => Interlocked.Increment(ref _clientErrors);

    internal void ServerError() => Interlocked.Increment(ref _serverErrors);

    internal void Rejected() => Interlocked.Increment(ref _rejected);

    /// <summary>The figures now.</summary>
    public TeacherServerSnapshot Snapshot(int queued)
    {
        double[] latencies;
        lock (_gate) latencies = _latencies.Take((int)Math.Min(_latencyCount, Window)).Order().ToArray();
        double Percentile(double p) => latencies.Length == 0 ? 0 : latencies[(int)Math.Min(latencies.Length - 1, Math.Ceiling(p * latencies.Length) - 1)];
        long batches = Interlocked.Read(ref _batches);
        return new TeacherServerSnapshot(Interlocked.Read(ref _requests), Interlocked.Read(ref _sequences), Interlocked.Read(ref _tokens), batches,
            batches == 0 ? 0 : (double)Interlocked.Read(ref _batchedRequests) / batches, Interlocked.Read(ref _clientErrors), Interlocked.Read(ref _serverErrors),
            Interlocked.Read(ref _rejected), queued, Percentile(0.5), Percentile(0.99), GC.GetTotalMemory(false), Environment.WorkingSet);
    }
}

/// <summary>The server's figures at one moment.</summary>
/// <param name="Requests">Requests answered with outputs.</param>
/// <param name="Sequences">Sequences in them.</param>
/// <param name="Tokens">Tokens in them.</param>
/// <param name="ForwardPasses">Forward passes run.</param>
/// <param name="RequestsPerForwardPass">Requests merged per forward pass, on average.</param>
/// <param name="ClientErrors">Requests refused as malformed, unauthorised or over a limit (4xx).</param>
/// <param name="ServerErrors">Requests the teacher failed on (500).</param>
/// <param name="Rejected">Requests refused because the queue was full or the server was stopping (503).</param>
/// <param name="Queued">Requests waiting now.</param>
/// <param name="LatencyP50Milliseconds">Median time from a request's arrival to its answer, over the last 4,096.</param>
/// <param name="LatencyP99Milliseconds">99th percentile of the same.</param>
/// <param name="ManagedBytes">Managed heap in use.</param>
/// <param name="WorkingSetBytes">The process's resident memory.</param>
public sealed record TeacherServerSnapshot(long Requests, long Sequences, long Tokens, long ForwardPasses, double RequestsPerForwardPass, long ClientErrors, long ServerErrors,
    long Rejected, int Queued, double LatencyP50Milliseconds, double LatencyP99Milliseconds, long ManagedBytes, long WorkingSetBytes);
