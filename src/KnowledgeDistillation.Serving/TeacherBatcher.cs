using System.Threading.Channels;
using KnowledgeDistillation.Models;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KnowledgeDistillation.Serving;

/// <summary>
/// Dynamic batching: requests wait in a bounded queue; one worker takes the oldest, gathers the requests that arrive
/// within <see cref="TeacherServerOptions.BatchWindow"/> and share its shape and inputs (the same sequence length, mask
/// and token types present or not — padding is never added, so no answer depends on the requests it was batched with),
/// up to <see cref="TeacherServerOptions.MaxBatchSequences"/>, and runs them as one forward pass. On shutdown it
/// answers every request already queued before it stops.
/// </summary>
public sealed class TeacherBatcher : IHostedService, IDisposable
{
    private readonly ServedTeacher _teacher;
    private readonly TeacherServerMetrics _metrics;
    private readonly ILogger<TeacherBatcher> _logger;
    private readonly Channel<Pending> _queue;
    private readonly List<Pending> _held = [];
    private readonly CancellationTokenSource _stopping = new();
    private Thread? _worker;

    /// <summary>Creates the batcher for the served teacher.</summary>
    public TeacherBatcher(ServedTeacher teacher, TeacherServerMetrics metrics, ILogger<TeacherBatcher> logger, IHostApplicationLifetime lifetime)
    {
        // Readiness turns 503 as soon as shutdown begins, so a load balancer stops sending while the queue drains.
        lifetime.ApplicationStopping.Register(() => Stopping = true);
        _teacher = teacher;
        _metrics = metrics;
        _logger = logger;
        _queue = Channel.CreateBounded<Pending>(new BoundedChannelOptions(teacher.Options.QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    }

    /// <summary>Requests waiting now.</summary>
    public int Queued => _queue.Reader.Count + _held.Count;

    /// <summary>Whether the worker is taking requests (false before it starts and once the server stops).</summary>
    public bool Accepting { get; private set; }

    /// <summary>Whether shutdown has begun (requests are still answered until the worker stops).</summary>
    public bool Stopping { get; private set; }

    /// <summary>Whether a load balancer should send requests here: taking them, and not shutting down.</summary>
    public bool Ready => Accepting && !Stopping;

    /// <summary>Queues a request; null when the queue is full or the server is stopping (answer 503).</summary>
    public Task<byte[]>? Enqueue(TokenBatch batch)
    {
        var pending = new Pending(batch, new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously));
        return Accepting && _queue.Writer.TryWrite(pending) ? pending.Answer.Task : null;
    }

    /// <summary>Starts the worker: TorchSharp work on one dedicated thread, so forward passes never overlap and none blocks a request thread.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_worker is not null) throw new InvalidOperationException("The batcher has already started.");
        Accepting = true;
        // A thread of its own, started here: a worker scheduled for later (BackgroundService) never runs if stopping
        // comes first, and the requests already queued would wait forever.
        _worker = new Thread(() => Work(_stopping.Token)) { IsBackground = true, Name = "teacher-batcher" };
        _worker.Start();
        return Task.CompletedTask;
    }

    /// <summary>Stops taking requests, answers those queued, and waits for the worker (or for <paramref name="cancellationToken"/>).</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping.Cancel();
        if (_worker is not { } worker) return;
        while (worker.IsAlive && !cancellationToken.IsCancellationRequested) await Task.Delay(10, CancellationToken.None);
    }

    /// <inheritdoc />
    public void Dispose() => _stopping.Cancel();

    private void Work(CancellationToken stopping)
    {
        try
        {
            while (true)
            {
                Pending? first = Next(stopping);
                if (first is null) break;
                List<Pending> group = Gather(first, stopping);
                Run(group);
            }
        }
        finally
        {
            Accepting = false;
            _queue.Writer.TryComplete();
            // Shutdown: answer what is already queued, then stop.
            while (Take() is { } pending) Run(Gather(pending, CancellationToken.None, wait: false));
        }
    }

    private Pending? Take()
    {
        if (_held.Count > 0)
        {
            Pending held = _held[0];
            _held.RemoveAt(0);
            return held;
        }
        return _queue.Reader.TryRead(out Pending? next) ? next : null;
    }

    private Pending? Next(CancellationToken stopping)
    {
        if (Take() is { } ready) return ready;
        try
        {
            return _queue.Reader.WaitToReadAsync(stopping).AsTask().GetAwaiter().GetResult() ? Take() : null;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private List<Pending> Gather(Pending first, CancellationToken stopping, bool wait = true)
    {
        var group = new List<Pending> { first };
        long sequences = first.Batch.InputIds.shape[0];
        int limit = _teacher.Options.MaxBatchSequences;
        // Held requests that fit join first, in arrival order.
        for (int i = 0; i < _held.Count && sequences < limit; i++)
        {
            if (Fits(first, _held[i], sequences, limit))
            {
                sequences += _held[i].Batch.InputIds.shape[0];
                group.Add(_held[i]);
                _held.RemoveAt(i--);
            }
        }
        DateTime deadline = DateTime.UtcNow + _teacher.Options.BatchWindow;
        while (sequences < limit)
        {
            if (!_queue.Reader.TryRead(out Pending? next))
            {
                TimeSpan left = deadline - DateTime.UtcNow;
                if (!wait || left <= TimeSpan.Zero || stopping.IsCancellationRequested) break;
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
                timeout.CancelAfter(left);
                try
                {
                    if (!_queue.Reader.WaitToReadAsync(timeout.Token).AsTask().GetAwaiter().GetResult()) break;
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                continue;
            }
            if (Fits(first, next, sequences, limit))
            {
                sequences += next.Batch.InputIds.shape[0];
                group.Add(next);
            }
            else
            {
                _held.Add(next);
            }
        }
        return group;
    }

    private static bool Fits(Pending first, Pending other, long sequences, int limit) =>
        sequences + other.Batch.InputIds.shape[0] <= limit
        && other.Batch.InputIds.shape[1] == first.Batch.InputIds.shape[1]
        && (other.Batch.AttentionMask is null) == (first.Batch.AttentionMask is null)
        && (other.Batch.TokenTypeIds is null) == (first.Batch.TokenTypeIds is null);

    private void Run(List<Pending> group)
    {
        _metrics.Batch(group.Count);
        try
        {
            byte[][] answers = _teacher.Run(group.Select(p => p.Batch).ToList());
            for (int i = 0; i < group.Count; i++) group[i].Answer.TrySetResult(answers[i]);
        }
        catch (Exception e)
        {
            _logger.LogError(e, "The teacher failed on a batch of {Requests} requests", group.Count);
            foreach (Pending pending in group) pending.Answer.TrySetException(e);
        }
        finally
        {
            foreach (Pending pending in group)
            {
                pending.Batch.InputIds.Dispose();
                pending.Batch.AttentionMask?.Dispose();
                pending.Batch.TokenTypeIds?.Dispose();
            }
        }
    }

    private sealed record Pending(TokenBatch Batch, TaskCompletionSource<byte[]> Answer);
}
