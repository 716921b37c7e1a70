using System.Text.Json.Nodes;
using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Remote.ServerFixtures;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Adapters;

[Collection(GlobalRngCollection.Name)]
public sealed class LoraCheckpointTests
{
    private const long Steps = 8;

    private sealed class CancelAt(long step, CancellationTokenSource source) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (report.Step == step) source.Cancel();
        }
    }

    /// <summary>The base student (seed 5) with LoRA adapters whose A is drawn from <paramref name="adapterSeed"/>.</summary>
    private static GptModel AdaptedStudent(int baseSeed, int adapterSeed)
    {
        GptModel student = Student(baseSeed);
        manual_seed(adapterSeed);
        Lora.Apply(student, new LoraOptions { Targets = [.. LoraTargets.GptBertAll], Rank = 4, Alpha = 8, Dropout = 0.1 });
        return student;
    }

    private static DistillationTrainer<TokenBatch> Trainer(GptModel student, string folder, bool resume) =>
        new(Teacher(3), student, DistillationObjective.Create().SoftTargets(0.8, temperature: 2.0).HardTargets(0.2).Build(),
            Options(Steps, o =>
            {
                o.CheckpointDirectory = folder;
                o.ResumeFromLatest = resume;
                o.WarmupSteps = 2;
                o.Decay = LearningRateDecay.Cosine;
            }));

    [Fact]
    public void A_LoRA_run_checkpoints_only_its_adapters_and_resumes_bit_for_bit()
    {
        List<DistillationBatch<TokenBatch>> data = Batches(3);
        using var straight = new TemporaryFolder();
        using var interrupted = new TemporaryFolder();
        GptModel uninterrupted = AdaptedStudent(5, 50);
        Trainer(uninterrupted, straight.Path, resume: false).Train(data);

        using var cancel = new CancellationTokenSource();
        TrainingResult first = Trainer(AdaptedStudent(5, 50), interrupted.Path, resume: false).Train(data, callbacks: [new CancelAt(3, cancel)], cancellationToken: cancel.Token);
        first.Steps.Should().Be(3);
        GptModel resumed = AdaptedStudent(5, 999); // other adapter initialisation: A and B must come from the checkpoint
        Trainer(resumed, interrupted.Path, resume: true).Train(data);

        SameWeights(Snapshot(resumed), Snapshot(uninterrupted)).Should().BeTrue("adapters, optimizer state, schedule, data position and dropout RNG are restored");

        JsonObject manifest = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(first.LastCheckpoint!, "manifest.json")))!;
        string[] stored = [.. manifest["StoredStudent"]!["Names"]!.AsArray().Select(n => n!.GetValue<string>())];
        stored.Should().HaveCount(8).And.OnlyContain(n => n.Contains(".lora_"), "only the adapters train; the frozen base is not rewritten");
        manifest["StoredStudent"]!["FrozenTensors"]!.GetValue<int>().Should().Be(resumed.parameters().Count(p => !p.requires_grad));
        long full = resumed.parameters().Sum(p => p.numel() * 4), file = new FileInfo(Path.Combine(first.LastCheckpoint!, "student.dat")).Length;
        file.Should().BeLessThan(full / 3, $"the adapters' file ({file} bytes) is a fraction of the model ({full} bytes)");
    }

    [Fact]
    public void Resuming_a_LoRA_checkpoint_onto_other_base_weights_is_refused_and_changes_nothing()
    {
        List<DistillationBatch<TokenBatch>> data = Batches(2);
        using var folder = new TemporaryFolder();
        using var cancel = new CancellationTokenSource();
        Trainer(AdaptedStudent(5, 50), folder.Path, resume: false).Train(data, callbacks: [new CancelAt(2, cancel)], cancellationToken: cancel.Token);

        GptModel otherBase = AdaptedStudent(6, 50);
        Dictionary<string, Tensor> before = Snapshot(otherBase);
        Action resume = () => Trainer(otherBase, folder.Path, resume: true).Train(data);
        resume.Should().Throw<InvalidOperationException>().WithMessage("Cannot resume from *the student's frozen parameters (* tensors now, * then) are not the ones it was trained on*");
        SameWeights(Snapshot(otherBase), before).Should().BeTrue();
    }
}
