using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Training;

[Collection(Losses.TensorCountCollection.Name)]
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
                o.ResumeFrom = resume;
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
        TrainingResult resumed = Trainer(teacher, resumedStudent, interrupted.Path, "latest").Train(ShuffledEachEpoch(batches));

        first.Cancelled.Should().BeTrue();
        first.Steps.Should().Be(6, "cancellation stops at the next step boundary");
        Path.GetFileName(first.LastCheckpoint).Should().Be("checkpoint-6");
        Directory.GetFiles(first.LastCheckpoint!).Select(Path.GetFileName).Should().BeEquivalentTo("student.dat", "objective.dat", "optimizer.dat", "trainer.json", "manifest.json");
        resumed.Steps.Should().Be(Steps);
        SameWeights(Snapshot(resumedStudent), Snapshot(uninterruptedStudent)).Should().BeTrue("resume restores weights, optimizer, schedule, data position and RNG");
        Directory.GetDirectories(interrupted.Path).Select(Path.GetFileName).Should().BeEquivalentTo("checkpoint-6", "checkpoint-14");
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

        TrainingResult result = Trainer(teacher, resumed, folder.Path, "latest").Train(ShuffledEachEpoch(batches));

        result.Steps.Should().Be(Steps, "the newest checkpoint that verifies (step 14) was used and the run was already complete");
        SameWeights(Snapshot(resumed), Snapshot(student)).Should().BeTrue();
    }

    [Fact]
    public void No_tensor_leaks_between_step_10_and_step_200()
    {
        Losses.TensorCountCollection.FinaliseEarlierGarbage();
        var teacher = Teacher();
        var counts = new Dictionary<long, long>();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student(dropout: 0.2)),
            DistillationObjective.Create().SoftTargets(0.5).HardTargets(0.5).GeneralizedJensenShannon(0.1, beta: 0.5).Build(),
            Options(200, o => o.GradientAccumulationSteps = 2));

        trainer.Train(Data(teacher, 6, 16, 12), callbacks: [new CountAt(counts, 10, 200)]);

        counts[200].Should().Be(counts[10]);
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
            if (steps.Contains(report.Step)) counts[report.Step] = Tensor.TotalCount;
        }
    }
}
