using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Training;

[Collection(GlobalRngCollection.Name)]
public class ResumeAndMemoryTests
{
    private const long Steps = 14;

    /// <summary>Eight micro-batches per epoch, reshuffled each epoch with torch's RNG (which checkpoints restore).</summary>
    private static Func<int, IEnumerable<DistillationBatch<Tensor>>> ShuffledEachEpoch(List<DistillationBatch<Tensor>> batches) => _ =>
    {
        long[] order = randperm(batches.Count).data<long>().ToArray();
        return order.Select(i => batches[(int)i]);
    };

    private static DistillationTrainer<Tensor> Trainer(nn.Module<Tensor, Tensor> teacher, nn.Module<Tensor, Tensor> student, string folder, string? resume) =>
        new(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student),
            DistillationObjective.Create().SoftTargets(0.8, temperature: Schedule.Linear(4, 1, Steps)).HardTargets(0.2).Build(),
            Options(Steps, o =>
            {
                o.GradientAccumulationSteps = 2;
                o.WarmupSteps = 3;
                o.Decay = LearningRateDecay.Cosine;
                o.CheckpointDirectory = folder;
                Resume.Into(o, resume);
            }));

    [Fact]
    public void A_run_cancelled_at_step_k_and_resumed_reaches_the_same_weights_bit_for_bit()
    {
        var teacher = Teacher();
        List<DistillationBatch<Tensor>> batches = Data(teacher, 8, 16, 11);
        using var straight = new TemporaryFolder();
        using var interrupted = new TemporaryFolder();

        var uninterruptedStudent = Student(seed: 1, dropout: 0.3);
        Trainer(teacher, uninterruptedStudent, straight.Path, null).Train(ShuffledEachEpoch(batches));

        using var cancel = new CancellationTokenSource();
        var firstStudent = Student(seed: 1, dropout: 0.3);
        TrainingResult first = Trainer(teacher, firstStudent, interrupted.Path, null)
            .Train(ShuffledEachEpoch(batches), callbacks: [new CancelAt(6, cancel)], cancellationToken: cancel.Token);
        var resumedStudent = Student(seed: 999, dropout: 0.3); // a different initialisation: everything must come from the checkpoint
        TrainingResult resumed = Trainer(teacher, resumedStudent, interrupted.Path, Resume.Latest).Train(ShuffledEachEpoch(batches));

        first.Cancelled.Should().BeTrue();
        first.Steps.Should().Be(6, "cancellation stops at the next step boundary");
        Path.GetFileName(first.LastCheckpoint).Should().Be("checkpoint-6");
        Directory.GetFiles(first.LastCheckpoint!).Select(Path.GetFileName).Should().BeEquivalentTo("student.dat", "objective.dat", "optimizer.dat", "trainer.json", "manifest.json");
        resumed.Steps.Should().Be(Steps);
        SameWeights(Snapshot(resumedStudent), Snapshot(uninterruptedStudent)).Should().BeTrue("resume restores weights, optimizer, schedule, data position and RNG");
        Directory.GetDirectories(interrupted.Path).Select(Path.GetFileName).Should().BeEquivalentTo("checkpoint-6", "checkpoint-14");
    }

    /// <summary>Data made while it is read: each micro-batch is drawn from torch's RNG when the trainer asks for it.</summary>
    private static IEnumerable<DistillationBatch<Tensor>> GeneratedLazily(nn.Module<Tensor, Tensor> teacher, int count)
    {
        for (int i = 0; i < count; i++)
        {
            Tensor x = randn(16, Features);
            Tensor y;
            using (no_grad()) y = teacher.call(x).argmax(-1);
            yield return new DistillationBatch<Tensor>(x, y);
        }
    }

    [Theory]
    [InlineData(1, 3)]
    [InlineData(2, 3)]
    [InlineData(2, 4)] // the checkpoint closes the first epoch: resume starts the next one
    public void A_resumed_run_over_lazily_generated_data_and_dropout_reaches_the_same_weights_bit_for_bit(int accumulation, long cancelAt)
    {
        var teacher = Teacher();
        using var straight = new TemporaryFolder();
        using var interrupted = new TemporaryFolder();
        DistillationTrainer<Tensor> Make(nn.Module<Tensor, Tensor> student, string folder, string? resume) =>
            new(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student),
                DistillationObjective.Create().SoftTargets(0.7, temperature: 2).HardTargets(0.3).Build(),
                Options(9, o =>
                {
                    o.GradientAccumulationSteps = accumulation;
                    o.CheckpointDirectory = folder;
                    Resume.Into(o, resume);
                }));
        Func<int, IEnumerable<DistillationBatch<Tensor>>> data = _ => GeneratedLazily(teacher, 4 * accumulation);

        manual_seed(7);
        var uninterruptedStudent = Student(seed: 1, dropout: 0.4);
        Make(uninterruptedStudent, straight.Path, null).Train(data);
        manual_seed(7);
        var firstStudent = Student(seed: 1, dropout: 0.4);
        using var cancel = new CancellationTokenSource();
        Make(firstStudent, interrupted.Path, null).Train(data, callbacks: [new CancelAt(cancelAt, cancel)], cancellationToken: cancel.Token)
            .Steps.Should().Be(cancelAt);
        manual_seed(12345); // whatever the RNG holds before the resume, the checkpoint's state must replace it
        var resumedStudent = Student(seed: 999, dropout: 0.4);
        Make(resumedStudent, interrupted.Path, Resume.Latest).Train(data).Steps.Should().Be(9);

        SameWeights(Snapshot(resumedStudent), Snapshot(uninterruptedStudent)).Should().BeTrue(
            "the batch after the checkpoint must be generated from the RNG state the interrupted run had at that point");
    }

    [Fact]
    public void The_accelerators_seed_of_every_step_repeats_in_a_resumed_run()
    {
        var teacher = Teacher();
        List<DistillationBatch<Tensor>> batches = Data(teacher, 8, 16, 17);
        using var straight = new TemporaryFolder();
        using var interrupted = new TemporaryFolder();
        var straightSeeds = new List<long>();
        var resumedSeeds = new List<long>();

        DistillationTrainer<Tensor> uninterrupted = Trainer(teacher, Student(seed: 1, dropout: 0.3), straight.Path, null);
        uninterrupted.AcceleratorReseeded = straightSeeds.Add;
        uninterrupted.Train(ShuffledEachEpoch(batches));
        using var cancel = new CancellationTokenSource();
        DistillationTrainer<Tensor> first = Trainer(teacher, Student(seed: 1, dropout: 0.3), interrupted.Path, null);
        first.AcceleratorReseeded = resumedSeeds.Add;
        first.Train(ShuffledEachEpoch(batches), callbacks: [new CancelAt(5, cancel)], cancellationToken: cancel.Token);
        manual_seed(4321);
        var resumedStudent = Student(seed: 2, dropout: 0.3);
        DistillationTrainer<Tensor> resumed = Trainer(teacher, resumedStudent, interrupted.Path, Resume.Latest);
        resumed.AcceleratorReseeded = resumedSeeds.Add;
        resumed.Train(ShuffledEachEpoch(batches));

        straightSeeds.Should().HaveCount((int)Steps).And.OnlyHaveUniqueItems();
        resumedSeeds.Should().Equal(straightSeeds, "each step's seed comes from the CPU generator, whose state the checkpoint holds");
    }

    [Fact]
    public void Resuming_latest_skips_a_newer_checkpoint_folder_whose_files_a_power_loss_left_incomplete()
    {
        var teacher = Teacher();
        List<DistillationBatch<Tensor>> batches = Data(teacher, 8, 16, 13);
        using var folder = new TemporaryFolder();
        var student = Student(seed: 3);
        Trainer(teacher, student, folder.Path, null).Train(ShuffledEachEpoch(batches));
        // Named like a real, newer checkpoint — so "latest" picks it first — but holding a partial student and no manifest.
        string newer = Path.Combine(folder.Path, "checkpoint-20");
        Directory.CreateDirectory(newer);
        File.WriteAllBytes(Path.Combine(newer, "student.dat"), File.ReadAllBytes(Path.Combine(folder.Path, $"checkpoint-{Steps}", "student.dat"))[..40]);
        var resumed = Student(seed: 4);

        TrainingResult result = Trainer(teacher, resumed, folder.Path, Resume.Latest).Train(ShuffledEachEpoch(batches));

        result.Steps.Should().Be(Steps, "the newest checkpoint that verifies (step 14) was used and the run was already complete");
        SameWeights(Snapshot(resumed), Snapshot(student)).Should().BeTrue();
    }

    [Fact]
    public void No_tensor_leaks_between_step_10_and_step_200()
    {
        var teacher = Teacher();
        var counts = new Dictionary<long, long>();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student(dropout: 0.2)),
            DistillationObjective.Create().SoftTargets(0.5).HardTargets(0.5).GeneralizedJensenShannon(0.1, beta: 0.5).Build(),
            Options(200, o => o.GradientAccumulationSteps = 2));

        trainer.Train(Data(teacher, 6, 16, 12), callbacks: [new CountAt(counts, 10, 200)]);

        counts[200].Should().Be(counts[10]);
    }

    [Fact]
    public void The_leak_count_sees_a_tensor_leaked_each_step_even_after_the_collector_finalises_it()
    {
        var teacher = Teacher();
        var counts = new Dictionary<long, long>();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student()),
            DistillationObjective.Create().SoftTargets(1).Build(), Options(40));

        trainer.Train(Data(teacher, 4, 8, 12), callbacks: [new LeakOneTensorPerStep(), new CountAt(counts, 10, 40)]);
        GC.Collect();
        GC.WaitForPendingFinalizers();

        (counts[40] - counts[10]).Should().Be(30, "the control for the leak test above: a real leak must show");
    }

    private sealed class LeakOneTensorPerStep : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => _ = zeros(1);
    }

    private sealed class CancelAt(long step, CancellationTokenSource source) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (report.Step == step) source.Cancel();
        }
    }

    private sealed class CountAt(Dictionary<long, long> counts, params long[] steps) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (steps.Contains(report.Step)) counts[report.Step] = OwnedTensors.Live;
        }
    }
}
