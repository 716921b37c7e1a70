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
    public void The_share_of_student_batches_over_10000_draws_is_within_1_percent_of_lambda(double lambda)
    {
        var batches = new OnPolicyBatches(Decoder(1), Decoder(2), new OnPolicyOptions { StudentFraction = lambda, SequenceLevel = true, Seed = 5 });

        int student = Enumerable.Range(0, 10_000).Count(_ => batches.NextSource() == CompletionSource.Student);

        (student / 10_000.0).Should().BeApproximately(lambda, 0.01);
        batches.Counts[CompletionSource.Teacher].Should().Be(10_000 - student, "with SequenceLevel every other batch is the teacher's");
        batches.Counts[CompletionSource.Data].Should().Be(0);
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

        DistillationBatch<TokenBatch> onPolicy = new OnPolicyBatches(student, teacher, new OnPolicyOptions { StudentFraction = 1, Generation = generation }).Next(prompt);
        DistillationBatch<TokenBatch> sequenceLevel = new OnPolicyBatches(student, teacher, new OnPolicyOptions { StudentFraction = 0, SequenceLevel = true, Generation = generation }).Next(prompt);

        using GenerationResult fromStudent = TextGeneration.Generate(student, prompt.PromptIds, null, generation);
        using GenerationResult fromTeacher = TextGeneration.Generate(teacher, prompt.PromptIds, null, generation);
        onPolicy.Inputs.InputIds.data<long>().ToArray().Should().Equal(fromStudent.Sequences.data<long>().ToArray());
        sequenceLevel.Inputs.InputIds.data<long>().ToArray().Should().Equal(fromTeacher.Sequences.data<long>().ToArray());
        ((Action)(() => new OnPolicyBatches(student, teacher, new OnPolicyOptions { StudentFraction = 0 }).Next(prompt))).Should().Throw<InvalidOperationException>()
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
            .Next(new PromptBatch(prompts)) with { DisposeAfterUse = false };
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
