using KnowledgeDistillation.Models;
using KnowledgeDistillation.Remote;
using KnowledgeDistillation.Serving;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Remote.ServerFixtures;

namespace KnowledgeDistillation.Tests.Remote;

/// <summary>The dynamic batcher: what it merges, what it answers on shutdown, and when it is ready.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class TeacherBatcherTests
{
    private sealed class Lifetime : IHostApplicationLifetime
    {
        private readonly CancellationTokenSource _stopping = new();

        public CancellationToken ApplicationStarted => CancellationToken.None;

        public CancellationToken ApplicationStopping => _stopping.Token;

        public CancellationToken ApplicationStopped => CancellationToken.None;

        public void StopApplication() => _stopping.Cancel();
    }

    private static TokenBatch Batch(int sequences, int length, int seed)
    {
        manual_seed(seed);
        return new TokenBatch(randint(0, Vocabulary, [sequences, length]));
    }

    [Fact]
    public async Task Requests_of_one_shape_merge_into_one_pass_with_each_answer_equal_to_its_own_pass_and_others_wait_their_turn()
    {
        var served = new ServedTeacher(Teacher(3), Options());
        var alone = new List<byte[]>();
        // Each request's answer when it runs alone.
        TokenBatch[] requests = [Batch(2, 8, 1), Batch(3, 8, 2), Batch(2, 5, 3), Batch(1, 8, 4)];
        foreach (TokenBatch r in requests) alone.Add(served.Run([new TokenBatch(r.InputIds.clone())])[0]);

        var options = Options();
        options.BatchWindow = TimeSpan.FromMilliseconds(200);
        var metrics = new TeacherServerMetrics();
        var batcher = new TeacherBatcher(new ServedTeacher(Teacher(3), options), metrics, NullLogger<TeacherBatcher>.Instance, new Lifetime());
        await batcher.StartAsync(CancellationToken.None);
        Task<byte[]>[] answers = requests.Select(r => batcher.Enqueue(new TokenBatch(r.InputIds.clone()))!).ToArray();
        byte[][] results = await Task.WhenAll(answers);
        await batcher.StopAsync(CancellationToken.None);

        for (int i = 0; i < requests.Length; i++) results[i].Should().Equal(alone[i], "request {0}'s answer does not depend on its batch companions", i);
        TeacherServerSnapshot snapshot = metrics.Snapshot(0);
        snapshot.ForwardPasses.Should().Be(2, "the three length-8 requests share a pass; the length-5 one runs in its own");
    }

    [Fact]
    public async Task Shutdown_turns_readiness_off_at_once_answers_what_is_queued_and_then_refuses()
    {
        var lifetime = new Lifetime();
        var batcher = new TeacherBatcher(new ServedTeacher(Teacher(3), Options()), new TeacherServerMetrics(), NullLogger<TeacherBatcher>.Instance, lifetime);
        batcher.Ready.Should().BeFalse("the worker has not started");
        await batcher.StartAsync(CancellationToken.None);
        batcher.Ready.Should().BeTrue();

        lifetime.StopApplication();
        batcher.Ready.Should().BeFalse("shutdown has begun");
        Task<byte[]>[] queued = Enumerable.Range(0, 6).Select(i => batcher.Enqueue(Batch(1, 6, i))!).ToArray();
        queued.Should().OnlyContain(t => t != null, "requests are still taken while the server drains");
        await batcher.StopAsync(CancellationToken.None);
        (await Task.WhenAll(queued)).Should().OnlyContain(a => a.Length > 0);
        TeacherWire.DecodeResponse((await queued[5])).TopK!.Indices.shape.Should().Equal(1, 6, 5);
        batcher.Enqueue(Batch(1, 6, 9)).Should().BeNull("the worker has stopped");
    }
}
