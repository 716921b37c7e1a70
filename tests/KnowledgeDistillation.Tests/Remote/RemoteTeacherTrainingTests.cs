using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Remote;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Remote.ServerFixtures;

namespace KnowledgeDistillation.Tests.Remote;

/// <summary>A student trained against a teacher server, against one trained in-process from a top-k cache of the same teacher.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class RemoteTeacherTrainingTests
{
    private const int K = 5, Steps = 8;
    private const double T = 2.0;

    private static DistillationObjective Objective() => DistillationObjective.Create().SoftTargets(0.8, temperature: T).HardTargets(0.2).Build();

    private static float[] TrainFromCache(GptModel teacher, List<DistillationBatch<TokenBatch>> data)
    {
        using var folder = new TemporaryFolder();
        using (var writer = new TeacherCacheWriter(folder.PathOf("teacher.kdtc"), K, T))
        {
            using (no_grad())
            {
                foreach (DistillationBatch<TokenBatch> batch in data) writer.Append(teacher.Run(batch.Inputs, new OutputRequest()).Logits);
            }
            writer.Complete();
        }
        using TeacherCache cache = TeacherCache.Open(folder.PathOf("teacher.kdtc"));
        GptModel student = Student(5);
        new DistillationTrainer<TokenBatch>(new CachedTeacher<TokenBatch>(cache, b => b.ExampleIndices!), student, Objective(), Training.TrainingFixtures.Options(Steps)).Train(data);
        return Weights(student);
    }

    [Fact]
    public async Task A_student_trained_against_the_server_ends_at_the_weights_of_one_trained_from_a_top_k_cache()
    {
        GptModel teacher = Teacher(3);
        List<DistillationBatch<TokenBatch>> data = Batches(4);
        float[] cached = TrainFromCache(teacher, data);

        RunningServer server = RunningServer.Start(teacher, Options(K, T, key: "secret-key-1"));
        try
        {
            using var remote = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [server.Url], ApiKey = "secret-key-1" });
            GptModel student = Student(5);
            new DistillationTrainer<TokenBatch>(remote, student, Objective(), Training.TrainingFixtures.Options(Steps)).Train(data);
            float[] served = Weights(student);

            served.Should().HaveCount(cached.Length);
            served.Zip(cached).Max(p => Math.Abs(p.First - p.Second)).Should().BeLessThanOrEqualTo(1e-6f);
            remote.Description!.TopK.Should().Be(K);
            remote.Retries.Should().Be(0);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_replica_stopped_mid_run_and_restarted_loses_no_step_and_the_weights_equal_an_uninterrupted_run()
    {
        GptModel teacher = Teacher(3);
        List<DistillationBatch<TokenBatch>> data = Batches(4);
        float[] cached = TrainFromCache(teacher, data);

        RunningServer first = RunningServer.Start(teacher, Options(K, T)), second = RunningServer.Start(teacher, Options(K, T));
        int port = first.Url.Port;
        RunningServer? restarted = null;
        try
        {
            using var remote = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [first.Url, second.Url], RetryDelay = TimeSpan.FromMilliseconds(20) });
            GptModel student = Student(5);
            var steps = new List<long>();
            var faults = new FaultInjector(step =>
            {
                steps.Add(step);
                if (step == 2) first.Stop();
                if (step == 5) restarted = RunningServer.Start(teacher, Options(K, T), port);
            });
            new DistillationTrainer<TokenBatch>(remote, student, Objective(), Training.TrainingFixtures.Options(Steps)).Train(data, callbacks: [faults]);

            steps.Should().Equal(Enumerable.Range(1, Steps).Select(s => (long)s), "every step runs once, in order");
            remote.Retries.Should().BeGreaterThan(0, "requests to the stopped replica failed and went to the other");
            Weights(student).Zip(cached).Max(p => Math.Abs(p.First - p.Second)).Should().BeLessThanOrEqualTo(1e-6f);
            restarted.Should().NotBeNull();
        }
        finally
        {
            await first.DisposeAsync();
            await second.DisposeAsync();
            if (restarted is not null) await restarted.DisposeAsync();
        }
    }

    [Fact]
    public void Two_server_processes_one_killed_mid_run_and_restarted_lose_no_step_and_the_weights_equal_an_uninterrupted_run()
    {
        GptModel teacher = Teacher(3);
        List<DistillationBatch<TokenBatch>> data = Batches(4);
        float[] cached = TrainFromCache(teacher, data);
        using var folder = new TemporaryFolder();
        KnowledgeDistillation.Pretrained.PretrainedFolder.Save(teacher, folder.PathOf("teacher"));
        string[] serve = ["--model", folder.PathOf("teacher"), "--top-k", $"{K}", "--temperature", $"{T}"];

        int firstPort = ServerProcess.FreePort(), secondPort = ServerProcess.FreePort();
        ServerProcess first = ServerProcess.Start(firstPort, serve);
        using ServerProcess second = ServerProcess.Start(secondPort, serve);
        ServerProcess? restarted = null;
        try
        {
            first.Banner.Should().Contain(TeacherFingerprint.Of(teacher, TeacherCacheContent.TopKProbabilities, K, T), "the saved folder holds the same weights");
            using var remote = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [first.Url, second.Url], RetryDelay = TimeSpan.FromMilliseconds(20) });
            GptModel student = Student(5);
            var steps = new List<long>();
            var faults = new FaultInjector(step =>
            {
                steps.Add(step);
                if (step == 2) first.Kill();
                if (step == 5) restarted = ServerProcess.Start(firstPort, serve);
            });
            new DistillationTrainer<TokenBatch>(remote, student, Objective(), Training.TrainingFixtures.Options(Steps)).Train(data, callbacks: [faults]);

            steps.Should().Equal(Enumerable.Range(1, Steps).Select(s => (long)s), "every step runs once, in order");
            remote.Retries.Should().BeGreaterThan(0, "requests to the killed process failed and went to the other");
            Weights(student).Zip(cached).Max(p => Math.Abs(p.First - p.Second)).Should().BeLessThanOrEqualTo(1e-6f);
        }
        finally
        {
            first.Dispose();
            restarted?.Dispose();
        }
    }

    [Fact]
    public async Task A_replica_that_serves_another_teacher_or_other_settings_is_refused_by_name()
    {
        RunningServer right = RunningServer.Start(Teacher(3), Options(K, T)), otherWeights = RunningServer.Start(Teacher(4), Options(K, T)),
            otherTemperature = RunningServer.Start(Teacher(3), Options(K, 1.0));
        try
        {
            using var mixed = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [right.Url, otherWeights.Url] });
            ((Action)(() => mixed.Connect())).Should().Throw<InvalidOperationException>()
                .WithMessage($"The teacher server at {otherWeights.Url} serves tiny-gpt (top-5 at T = 2) with fingerprint sha256:*, but {right.Url} (tiny-gpt, top-5 at T = 2) is sha256:*");
            using var hotter = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [right.Url, otherTemperature.Url] });
            ((Action)(() => hotter.Connect())).Should().Throw<InvalidOperationException>().WithMessage($"*{otherTemperature.Url} serves tiny-gpt (top-5 at T = 1)*");

            // A pinned fingerprint refuses even the first replica when it differs.
            string expected = TeacherFingerprint.Of(Teacher(3), TeacherCacheContent.TopKProbabilities, K, T);
            using var pinned = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [otherWeights.Url], ExpectedFingerprint = expected });
            ((Action)(() => pinned.Connect())).Should().Throw<InvalidOperationException>().WithMessage($"*{otherWeights.Url}*the expected fingerprint is {expected}*");
            using var good = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [right.Url], ExpectedFingerprint = expected });
            good.Connect().Fingerprint.Should().Be(expected, "the fingerprint is computed from the weights and settings on either side");
        }
        finally
        {
            foreach (RunningServer s in new[] { right, otherWeights, otherTemperature }) await s.DisposeAsync();
        }
    }

    [Fact]
    public async Task Recording_the_first_epoch_into_a_cache_asks_the_server_once_per_batch_and_trains_as_the_cache_does()
    {
        GptModel teacher = Teacher(3);
        List<DistillationBatch<TokenBatch>> data = Batches(4);
        float[] cached = TrainFromCache(teacher, data);
        RunningServer server = RunningServer.Start(teacher, Options(K, T));
        using var folder = new TemporaryFolder();
        try
        {
            using var remote = RemoteTeacher.ForTokens(new RemoteTeacherOptions { Endpoints = [server.Url] });
            using (RecordingTeacher<TokenBatch> recording = remote.RecordingTo(folder.PathOf("recorded.kdtc"), 16, b => b.ExampleIndices!))
            {
                GptModel student = Student(5);
                new DistillationTrainer<TokenBatch>(recording, student, Objective(), Training.TrainingFixtures.Options(Steps)).Train(data); // 2 epochs of 4 batches
                recording.IsComplete.Should().BeTrue();
                Weights(student).Zip(cached).Max(p => Math.Abs(p.First - p.Second)).Should().BeLessThanOrEqualTo(1e-6f);
            }
            Serving.TeacherServerMetrics metrics = (Serving.TeacherServerMetrics)server.App.Services.GetService(typeof(Serving.TeacherServerMetrics))!;
            metrics.Snapshot(0).Requests.Should().Be(4, "the second epoch read the recorded cache");

            // A later run finds the complete cache and never asks the server.
            using (RecordingTeacher<TokenBatch> again = remote.RecordingTo(folder.PathOf("recorded.kdtc"), 16, b => b.ExampleIndices!))
            {
                again.IsComplete.Should().BeTrue();
                new DistillationTrainer<TokenBatch>(again, Student(5), Objective(), Training.TrainingFixtures.Options(4)).Train(data);
            }
            metrics.Snapshot(0).Requests.Should().Be(4);

            // Out of order in the first pass: refused, naming the example expected.
            using RecordingTeacher<TokenBatch> shuffled = remote.RecordingTo(folder.PathOf("shuffled.kdtc"), 16, b => b.ExampleIndices!);
            Action train = () => new DistillationTrainer<TokenBatch>(shuffled, Student(5), Objective(), Training.TrainingFixtures.Options(1)).Train([data[1]]);
            train.Should().Throw<Exception>().Which.ToString().Should().Contain("example 0 was next, the batch gives 4 at position 0");
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    private sealed class FaultInjector(Action<long> atStepEnd) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => atStepEnd(report.Step);
    }
}
