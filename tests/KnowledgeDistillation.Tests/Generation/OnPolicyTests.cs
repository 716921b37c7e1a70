using KnowledgeDistillation.Tests.Training;
using KnowledgeDistillation.Generation;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Generation;

/// <summary>On-policy distillation (GKD): the source draws, the completion-only labels, and token-normalised accumulation.</summary>
[Collection(GlobalRngCollection.Name)]
public class OnPolicyTests
{
    private static LlamaModel Decoder(int seed, int layers = 2)
    {
        manual_seed(seed);
        var model = new LlamaModel(new LlamaConfig { VocabSize = 23, ContextLength = 32, Width = 16, Heads = 2, Layers = layers, FeedForwardWidth = 24 });
        model.eval();
        return model;
    }

    [Theory]
    [InlineData(0.25)]
    [InlineData(0.5)]
    [InlineData(0.9)]
    public void The_share_of_student_batches_over_10000_positions_is_within_1_percent_of_lambda_and_the_draws_depend_on_nothing_else(double lambda)
    {
        var batches = new OnPolicyBatches(Decoder(1), Decoder(2), new OnPolicyOptions { StudentFraction = lambda, SequenceLevel = true, Seed = 5 });
        var again = new OnPolicyBatches(Decoder(3), Decoder(4), new OnPolicyOptions { StudentFraction = lambda, SequenceLevel = true, Seed = 5 });

        CompletionSource[] sources = Enumerable.Range(0, 10_000).Select(p => batches.SourceOf(p)).ToArray();
        int student = sources.Count(s => s == CompletionSource.Student);

        (student / 10_000.0).Should().BeApproximately(lambda, 0.01);
        sources.Should().OnlyContain(s => s != CompletionSource.Data, "with SequenceLevel every other batch is the teacher's");
        Enumerable.Range(0, 10_000).Select(p => again.SourceOf(p)).Should().Equal(sources, "another instance with the same seed draws the same sources");
        Enumerable.Range(0, 10_000).Reverse().Select(p => batches.SourceOf(p)).Reverse().Should().Equal(sources, "asking in any order changes nothing");
        Enumerable.Range(0, 10_000).Select(p => batches.SourceOf(p, epoch: 1)).Should().NotEqual(sources, "each epoch draws afresh");
    }

    [Fact]
    public void Labels_cover_exactly_the_real_completion_tokens_shifted_onto_the_positions_that_predict_them()
    {
        using var scope = NewDisposeScope();
        // Row 0: prompt [5 6 7], completion [8 9 2] (2 = end token, all real). Row 1: prompt [_ 3 4] (left-padded), completion [10 2 _].
        Tensor prompts = tensor(new long[,] { { 5, 6, 7 }, { 0, 3, 4 } }), promptMask = tensor(new bool[,] { { true, true, true }, { false, true, true } });
        Tensor completions = tensor(new long[,] { { 8, 9, 2 }, { 10, 2, 0 } }), completionMask = tensor(new bool[,] { { true, true, true }, { true, true, false } });

        DistillationBatch<TokenBatch> batch = OnPolicyBatches.Assemble(prompts, promptMask, completions, completionMask);

        batch.Inputs.InputIds.data<long>().ToArray().Should().Equal(5, 6, 7, 8, 9, 2, 0, 3, 4, 10, 2, 0);
        batch.Labels!.data<long>().ToArray().Should().Equal(-100, -100, 8, 9, 2, -100, -100, -100, 10, 2, -100, -100);
        batch.Inputs.AttentionMask!.data<bool>().ToArray().Should().Equal(true, true, true, true, true, true, false, true, true, true, true, false);
        batch.Inputs.PositionIds!.data<long>().ToArray().Should().Equal(0, 1, 2, 3, 4, 5, 0, 0, 1, 2, 3, 3);
        batch.DisposeAfterUse.Should().BeTrue();
    }

    [Fact]
    public void Student_batches_hold_the_students_samples_and_sequence_level_batches_the_teachers()
    {
        using var scope = NewDisposeScope();
        LlamaModel student = Decoder(1), teacher = Decoder(2);
        var prompt = new PromptBatch(TinyModelsIds(3, 4));
        var generation = new GenerationOptions { MaxNewTokens = 6, Sample = true, Seed = 100 };

        var onPolicyBatches = new OnPolicyBatches(student, teacher, new OnPolicyOptions { StudentFraction = 1, Generation = generation });
        DistillationBatch<TokenBatch> onPolicy = onPolicyBatches.Next(prompt, 0);
        DistillationBatch<TokenBatch> sequenceLevel = new OnPolicyBatches(student, teacher, new OnPolicyOptions { StudentFraction = 0, SequenceLevel = true, Generation = generation }).Next(prompt, 0);
        DistillationBatch<TokenBatch> later = new OnPolicyBatches(student, teacher, new OnPolicyOptions { StudentFraction = 1, Generation = generation }).Next(prompt, 7);

        // The batch at position p samples with a seed of its own, derived from the generation seed, the epoch and p.
        GenerationOptions firstSeed = generation with { Seed = onPolicyBatches.GenerationSeedOf(0, 0) };
        using GenerationResult fromStudent = TextGeneration.Generate(student, prompt.PromptIds, null, firstSeed);
        using GenerationResult fromTeacher = TextGeneration.Generate(teacher, prompt.PromptIds, null, firstSeed);
        later.Inputs.InputIds.data<long>().ToArray().Should().NotEqual(onPolicy.Inputs.InputIds.data<long>().ToArray(), "another position samples with another seed");
        onPolicy.Inputs.InputIds.data<long>().ToArray().Should().Equal(fromStudent.Sequences.data<long>().ToArray());
        sequenceLevel.Inputs.InputIds.data<long>().ToArray().Should().Equal(fromTeacher.Sequences.data<long>().ToArray());
        ((Action)(() => new OnPolicyBatches(student, teacher, new OnPolicyOptions { StudentFraction = 0 }).Next(prompt, 0))).Should().Throw<InvalidOperationException>()
            .WithMessage("*the PromptBatch has none*");
    }

    [Fact]
    public void One_micro_batch_of_8_and_8_of_1_give_the_same_step_to_1e_6()
    {
        using var scope = NewDisposeScope();
        LlamaModel teacher = Decoder(2);
        // Completions of uneven length (an end token stops some rows early), so per-micro-batch averaging would differ.
        Tensor prompts = TinyModelsIds(8, 5);
        var generation = new GenerationOptions { MaxNewTokens = 7, Sample = true, Seed = 3 };
        using (GenerationResult free = TextGeneration.Generate(Decoder(1), prompts, null, generation))
        {
            generation = generation with { EosTokenId = (int)free.Completions[0, 2].item<long>() }; // a token row 0 does produce
        }
        DistillationBatch<TokenBatch> whole = new OnPolicyBatches(Decoder(1), null, new OnPolicyOptions { StudentFraction = 1, Generation = generation })
            .Next(new PromptBatch(prompts), 0) with { DisposeAfterUse = false };
        whole.Labels!.ne(-100).sum(1).data<long>().ToArray().Distinct().Count().Should().BeGreaterThan(1, "rows should have different numbers of completion tokens");
        DistillationObjective objective = DistillationObjective.Create().GeneralizedJensenShannon(1.0, 0.5, temperature: 2.0).Build();

        Dictionary<string, Tensor> Step(int microBatch)
        {
            LlamaModel student = Decoder(1, layers: 1);
            student.train();
            var data = Enumerable.Range(0, 8 / microBatch).Select(i => Slice(whole, i * microBatch, microBatch)).ToList();
            var options = new DistillationTrainerOptions { MaxSteps = 1, GradientAccumulationSteps = 8 / microBatch, MaxGradientNorm = null, WeightDecay = 0, LearningRate = 1, WarmupSteps = 0, Decay = LearningRateDecay.Constant, Device = "cpu" };
            new DistillationTrainer<TokenBatch>([teacher], student, objective, options, optimizer: p => optim.SGD(p, 0.5)).Train(data);
            return student.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        }

        Dictionary<string, Tensor> accumulated = Step(1), single = Step(8);
        foreach ((string name, Tensor value) in single) (accumulated[name] - value).abs().max().item<float>().Should().BeLessThan(1e-6f, name);
    }

    [Fact]
    public void A_resumed_on_policy_run_matches_the_uninterrupted_one_without_generating_the_batches_it_passes_over()
    {
        LlamaModel teacher = Decoder(2);
        List<PromptBatch> prompts = Enumerable.Range(0, 6).Select(i => new PromptBatch(TinyModelsIds(2, 4 + i % 3))).ToList();
        var onPolicy = new OnPolicyOptions { StudentFraction = 0.5, SequenceLevel = true, Seed = 9, Generation = new GenerationOptions { MaxNewTokens = 5, Sample = true, Seed = 4 } };
        DistillationObjective Objective() => DistillationObjective.Create().GeneralizedJensenShannon(1.0, 0.5).Build();
        using var straight = new TemporaryFolder();
        using var interrupted = new TemporaryFolder();
        DistillationTrainer<TokenBatch> Trainer(LlamaModel student, string folder, string? resume) => new([teacher], student, Objective(),
            new DistillationTrainerOptions { Epochs = 2, LearningRate = 1e-2, Device = "cpu", CheckpointDirectory = folder, ResumeFrom = resume == Resume.Latest ? null : resume, ResumeFromLatest = resume == Resume.Latest, LoggingInterval = 100 });

        LlamaModel uninterrupted = Decoder(1, layers: 1);
        var all = new OnPolicyBatches(uninterrupted, teacher, onPolicy);
        Trainer(uninterrupted, straight.Path, null).Train(epoch => all.Batches(prompts, epoch));
        LlamaModel first = Decoder(1, layers: 1);
        var before = new OnPolicyBatches(first, teacher, onPolicy);
        using var cancel = new CancellationTokenSource();
        Trainer(first, interrupted.Path, null).Train(epoch => before.Batches(prompts, epoch), callbacks: [new CancelAt(4, cancel)], cancellationToken: cancel.Token);
        LlamaModel resumed = Decoder(7, layers: 1); // another initialisation: everything must come from the checkpoint
        var after = new OnPolicyBatches(resumed, teacher, onPolicy);
        Trainer(resumed, interrupted.Path, Resume.Latest).Train(epoch => after.Batches(prompts, epoch));

        all.Counts.Values.Sum().Should().Be(12, "two epochs of six batches, and counting the epoch generated nothing");
        before.Counts.Values.Sum().Should().Be(4);
        after.Counts.Values.Sum().Should().Be(8, "the four batches the checkpoint had consumed were passed over, not generated again");
        foreach ((string name, Tensor value) in resumed.state_dict())
        {
            value.eq(uninterrupted.state_dict()[name]).all().item<bool>().Should().BeTrue("{0}: the resumed run draws the same sources and samples as the uninterrupted one", name);
        }
    }

    private sealed class CancelAt(long step, CancellationTokenSource source) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (report.Step == step) source.Cancel();
        }
    }

    private static Tensor TinyModelsIds(int rows, int length)
    {
        manual_seed(rows * 31 + length);
        return randint(5, 23, [rows, length]);
    }

    private static DistillationBatch<TokenBatch> Slice(DistillationBatch<TokenBatch> batch, int start, int count)
    {
        TokenBatch b = batch.Inputs;
        return new DistillationBatch<TokenBatch>(
            new TokenBatch(b.InputIds.narrow(0, start, count), b.AttentionMask!.narrow(0, start, count)) { PositionIds = b.PositionIds!.narrow(0, start, count) },
            batch.Labels!.narrow(0, start, count));
    }
}
