using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>What the public API promises where it used to surprise: ownership, learning rates, progress, what a model claims, duplicated batch fields.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class TrainerApiTests
{
    private static DistillationObjective Soft() => DistillationObjective.Create().SoftTargets(0.5).HardTargets(0.5).Build();

    [Fact]
    public void The_trainer_owns_its_optimizer_and_is_disposed_with_it()
    {
        using var scope = NewDisposeScope();
        nn.Module<Tensor, Tensor> teacher = Teacher(), student = Student();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student), Soft(), Options(2));
        trainer.Should().BeAssignableTo<IDisposable>();
        trainer.Train(Data(teacher, 2, 8, seed: 1));

        trainer.Dispose();
        trainer.Dispose(); // twice is harmless

        trainer.Invoking(t => t.Train(Data(teacher, 2, 8, seed: 1))).Should().Throw<ObjectDisposedException>();
        trainer.Invoking(t => t.Evaluate(Data(teacher, 1, 8, seed: 2))).Should().Throw<ObjectDisposedException>();
    }

    [Fact]
    public void A_supplied_optimizer_keeps_its_own_learning_rate_which_the_schedule_scales()
    {
        using var scope = NewDisposeScope();
        nn.Module<Tensor, Tensor> teacher = Teacher(), student = Student();
        const double own = 0.05;
        using var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student), Soft(),
            Options(4, o => { o.LearningRate = 1e-3; o.WarmupSteps = 2; o.Decay = LearningRateDecay.Constant; }),
            optimizer: parameters => optim.SGD(parameters, own));
        var rates = new List<double>();

        trainer.Train(Data(teacher, 4, 8, seed: 1), callbacks: [new StepRecorder(rates)]);

        // Warm-up over 2 steps to the optimizer's own 0.05 (not the options' 1e-3), then constant.
        rates.Should().Equal(own / 2, own, own, own);
        trainer.Optimizer.ParamGroups.Single().LearningRate.Should().Be(own);
    }

    [Fact]
    public void Progress_is_reported_every_step_whatever_the_logging_interval()
    {
        using var scope = NewDisposeScope();
        nn.Module<Tensor, Tensor> teacher = Teacher(), student = Student();
        using var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student), Soft(),
            Options(3, o => o.LoggingInterval = 10));
        var seen = new List<long>();

        trainer.Train(Data(teacher, 3, 8, seed: 1), progress: new Recorder(seen));

        seen.Should().Equal(1, 2, 3);
    }

    [Fact]
    public void A_custom_model_that_does_not_say_what_it_provides_is_taken_to_give_logits_only_and_refused_at_construction_for_more()
    {
        using var scope = NewDisposeScope();
        var teacher = new LogitsOnly(Teacher());
        DistillationObjective needsHidden = DistillationObjective.Create().HiddenStateMse(1.0, LayerMap.FromPairs([new LayerPair(0, 0)], Classes, Classes, 1, 1)).Build();

        ((IDistillationModel<Tensor>)teacher).Provides.Should().Be(ModelOutputKinds.Logits);
        Action create = () => _ = new DistillationTrainer<Tensor>(teacher, DistillationModel.FromLogits(Student()), needsHidden, Options(1));
        create.Should().Throw<ArgumentException>().WithParameterName("teacher").WithMessage("*HiddenStates*");
    }

    [Fact]
    public void Example_indices_given_twice_for_a_token_batch_are_refused_naming_both_places()
    {
        using var scope = NewDisposeScope();
        var student = new KnowledgeDistillation.Transformers.GptModel(new KnowledgeDistillation.Transformers.GptConfig { VocabSize = 11, ContextLength = 8, Width = 8, Layers = 1, Heads = 2 });
        using var trainer = new DistillationTrainer<TokenBatch>(Array.Empty<IDistillationModel<TokenBatch>>(), student, DistillationObjective.Create().HardTargets(1.0).Build(), Options(1));
        Tensor ids = tensor(new long[] { 1, 2, 3, 4 }).reshape(1, 4);
        var batch = new DistillationBatch<TokenBatch>(new TokenBatch(ids, ExampleIndices: tensor(new long[] { 0 })), ids) { ExampleIndices = tensor(new long[] { 0 }) };

        trainer.Invoking(t => t.Train([batch])).Should().Throw<ArgumentException>().WithMessage("*DistillationBatch.ExampleIndices*TokenBatch.ExampleIndices*");
    }

    [Fact]
    public void A_custom_schedule_states_its_range_and_is_checked_where_it_is_given()
    {
        Action build = () => DistillationObjective.Create().SoftTargets(new Oscillating(-1, 1));
        build.Should().Throw<ArgumentException>().WithParameterName("weight").WithMessage("*-1*");
        DistillationObjective.Create().SoftTargets(new Oscillating(0, 1)).Build().Terms.Should().ContainSingle();
    }

    /// <summary>A schedule written outside the library that swings between two values; its extremes say so.</summary>
    private sealed record Oscillating(double Low, double High) : Schedule
    {
        public override double ValueAt(long step) => step % 2 == 0 ? High : Low;

        public override IEnumerable<double> Extremes => [Low, High];
    }

    private sealed class LogitsOnly(nn.Module<Tensor, Tensor> module) : IDistillationModel<Tensor>
    {
        public ModelOutput Run(Tensor input, OutputRequest request) => new(module.call(input));
    }

    private sealed class Recorder(List<long> seen) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => seen.Add(value.Step);
    }

    private sealed class StepRecorder(List<double> rates) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => rates.Add(report.LearningRate);
    }
}
