using KnowledgeDistillation.Generation;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Generation;

/// <summary>Sequence-level KD's shards: resumable, bit-identical after a restart, and ordinary training data.</summary>
[Collection(GlobalRngCollection.Name)]
public class GenerationShardsTests
{
    private static LlamaModel Teacher()
    {
        manual_seed(21);
        var model = new LlamaModel(new LlamaConfig { VocabSize = 19, ContextLength = 24, Width = 16, Heads = 2, Layers = 2, FeedForwardWidth = 24 });
        model.eval();
        return model;
    }

    private static List<PromptBatch> Prompts()
    {
        manual_seed(22);
        return Enumerable.Range(0, 7).Select(i => new PromptBatch(randint(3, 19, [3, 4 + i % 3]))).ToList();
    }

    private static readonly GenerationOptions Options = new() { MaxNewTokens = 6, Sample = true, Seed = 9, EosTokenId = 2 };

    private static Dictionary<string, byte[]> Files(string folder) =>
        Directory.GetFiles(folder).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);

    [Fact]
    public void A_restart_after_lost_and_truncated_shards_rewrites_them_bit_identically_and_keeps_the_rest()
    {
        using var whole = new TemporaryFolder();
        using var interrupted = new TemporaryFolder();
        LlamaModel teacher = Teacher();
        List<PromptBatch> prompts = Prompts();

        GenerationShards.Write(teacher, prompts, whole.Path, Options, batchesPerShard: 2).Should().Be(4);
        GenerationShards.Write(teacher, prompts, interrupted.Path, Options, batchesPerShard: 2);
        File.Delete(interrupted.PathOf("generations-00001.safetensors"));
        byte[] damaged = File.ReadAllBytes(interrupted.PathOf("generations-00002.safetensors"));
        File.WriteAllBytes(interrupted.PathOf("generations-00002.safetensors"), damaged[..(damaged.Length / 2)]);
        File.WriteAllText(interrupted.PathOf("generations-00003.safetensors.tmp-dead"), "a shard that was being written");
        DateTime untouched = File.GetLastWriteTimeUtc(interrupted.PathOf("generations-00000.safetensors"));

        manual_seed(12345); // the global RNG must not matter
        GenerationShards.Write(teacher, prompts, interrupted.Path, Options, batchesPerShard: 2).Should().Be(2, "only the lost and the truncated shard are generated again");

        Files(interrupted.Path).Keys.Should().BeEquivalentTo(Files(whole.Path).Keys);
        foreach ((string name, byte[] bytes) in Files(whole.Path)) Files(interrupted.Path)[name].Should().Equal(bytes, name);
        File.GetLastWriteTimeUtc(interrupted.PathOf("generations-00000.safetensors")).Should().Be(untouched);
    }

    [Fact]
    public void Shards_read_back_as_batches_labelled_on_the_completions_and_train_a_student_towards_the_teacher()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        LlamaModel teacher = Teacher();
        GenerationShards.Write(teacher, Prompts(), folder.Path, Options, batchesPerShard: 3);

        List<DistillationBatch<TokenBatch>> batches = GenerationShards.Read(folder.Path);

        batches.Should().HaveCount(7);
        foreach (DistillationBatch<TokenBatch> b in batches)
        {
            long promptLength = b.Inputs.InputIds.shape[1] - 6;
            b.Labels!.narrow(1, 0, promptLength - 1).eq(-100).all().item<bool>().Should().BeTrue("prompt positions predict prompt tokens: not scored");
            b.Labels!.ne(-100).sum().item<long>().Should().BeGreaterThan(0);
        }
        manual_seed(23);
        var student = new LlamaModel(teacher.Config with { Layers = 1 });
        double Nll()
        {
            using var noGrad = no_grad();
            student.eval();
            return batches.Average(b => nn.functional.cross_entropy(student.Run(b.Inputs, OutputRequest.LogitsOnly).Logits.reshape(-1, 19), b.Labels!.reshape(-1), ignore_index: -100).item<float>());
        }
        double before = Nll();
        new DistillationTrainer<TokenBatch>([], student, DistillationObjective.Create().HardTargets(1).Build(),
            new DistillationTrainerOptions { Epochs = 15, LearningRate = 1e-2, Device = "cpu" }).Train(batches);
        Nll().Should().BeLessThan(before - 0.3, "training on the teacher's generations fits them (from {0})", before);
    }

    [Fact]
    public void A_folder_of_other_prompts_or_a_changed_shard_is_refused()
    {
        using var folder = new TemporaryFolder();
        LlamaModel teacher = Teacher();
        GenerationShards.Write(teacher, Prompts(), folder.Path, Options, batchesPerShard: 4);

        ((Action)(() => GenerationShards.Write(teacher, Prompts().Take(3).ToList(), folder.Path, Options))).Should().Throw<InvalidDataException>()
            .WithMessage("*belongs to another teacher, other prompts or other generation settings*");
        // The same prompts and settings with a teacher whose weights changed (a new checkpoint) must not extend the old completions.
        LlamaModel changed = Teacher();
        using (no_grad()) changed.parameters().First().add_(1e-3);
        ((Action)(() => GenerationShards.Write(changed, Prompts(), folder.Path, Options, batchesPerShard: 4))).Should().Throw<InvalidDataException>()
            .WithMessage("*belongs to another teacher*");
        GenerationShards.Write(Teacher(), Prompts(), folder.Path, Options, batchesPerShard: 4).Should().Be(0, "the same teacher finds every shard complete");
        File.AppendAllText(folder.PathOf("generations-00001.safetensors"), "x");
        ((Action)(() => GenerationShards.Read(folder.Path))).Should().Throw<InvalidDataException>().WithMessage("*generations-00001.safetensors is missing or does not match its SHA-256*");
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        using var other = new TemporaryFolder();
        ((Action)(() => GenerationShards.Write(teacher, Prompts(), other.Path, Options, cancellation: cancelled.Token))).Should().Throw<OperationCanceledException>();
        Directory.GetFiles(other.Path).Should().BeEmpty("no shard is written for a cancelled run");
    }
}
