using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Microsoft.Extensions.Options;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Training;

[Collection(GlobalRngCollection.Name)] // the accumulation test builds two students from one seed and compares them
public class DistillationTrainerTests
{
    private static double KlToTeacher(nn.Module<Tensor, Tensor> teacher, nn.Module<Tensor, Tensor> student, List<DistillationBatch<Tensor>> data)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        student.eval();
        return data.Average(b => (double)new KnowledgeDistillation.Losses.SoftTargetKLLoss(1.0).forward(student.call(b.Inputs), teacher.call(b.Inputs)).item<float>());
    }

    [Fact]
    public void A_distilled_student_gets_closer_to_the_teacher_than_the_same_student_trained_on_hard_labels()
    {
        var teacher = Teacher();
        List<DistillationBatch<Tensor>> train = Data(teacher, 20, 32, 1), heldOut = Data(teacher, 10, 64, 2);
        double Run(DistillationObjective objective)
        {
            var student = Student(seed: 300);
            new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student), objective, Options(200))
                .Train(train);
            return KlToTeacher(teacher, student, heldOut);
        }

        double distilled = Run(DistillationObjective.Create().SoftTargets(0.9, temperature: 2.0).HardTargets(0.1).Build());
        double hardOnly = Run(DistillationObjective.Create().HardTargets(1.0).Build());

        distilled.Should().BeLessThan(hardOnly * 0.8, "soft targets carry the teacher's whole distribution (hard-only KL {0})", hardOnly);
    }

    [Fact]
    public void The_teacher_is_frozen_and_unchanged_after_training()
    {
        var teacher = Teacher();
        Dictionary<string, Tensor> before = Snapshot(teacher);
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student()),
            DistillationObjective.Create().SoftTargets(1.0).Build(), Options(20));

        trainer.Train(Data(teacher, 5, 16, 3));

        SameWeights(Snapshot(teacher), before).Should().BeTrue();
        teacher.parameters().Should().OnlyContain(p => !p.requires_grad);
        teacher.training.Should().BeFalse();
    }

    [Fact]
    public void Every_step_reports_each_term_and_the_weighted_total()
    {
        var teacher = Teacher();
        var reports = new List<StepReport>();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student()),
            DistillationObjective.Create().SoftTargets(0.7).HardTargets(0.3).Build(), Options(3));

        trainer.Train(Data(teacher, 3, 16, 4), callbacks: [new Recorder(reports)]);

        reports.Should().HaveCount(3);
        foreach (StepReport r in reports)
        {
            r.Terms.Keys.Should().BeEquivalentTo("soft", "hard");
            r.Loss.Should().BeApproximately(0.7 * r.Terms["soft"] + 0.3 * r.Terms["hard"], 1e-5);
            r.Rows.Should().Be(16);
        }
    }

    [Fact]
    public void Gradient_accumulation_of_4_x_8_equals_one_batch_of_32_weighted_by_real_tokens()
    {
        // Token-level problem: [B, S] ids -> [B, S, V] logits, with ignored (-100) positions spread unevenly.
        manual_seed(7);
        var teacher = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11));
        Tensor ids = randint(0, 11, [32, 6]);
        Tensor labels = randint(0, 11, [32, 6]);
        labels[TensorIndex.Slice(0, 8), TensorIndex.Slice(0, 5)] = tensor(-100L); // the first micro-batch keeps few tokens
        labels[TensorIndex.Slice(20, 23)] = tensor(-100L);
        var objective = DistillationObjective.Create().SoftTargets(0.5, temperature: 2.0).HardTargets(0.5).Build();
        Dictionary<string, Tensor> Train(int microBatch, int accumulation)
        {
            manual_seed(8);
            var student = nn.Sequential(nn.Embedding(11, 4), nn.Linear(4, 11));
            var data = Enumerable.Range(0, 32 / microBatch)
                .Select(i => new DistillationBatch<Tensor>(ids[TensorIndex.Slice(i * microBatch, (i + 1) * microBatch)], labels[TensorIndex.Slice(i * microBatch, (i + 1) * microBatch)]))
                .ToList();
            var options = Options(1, o => { o.GradientAccumulationSteps = accumulation; o.MaxGradientNorm = null; o.WeightDecay = 0; o.Seed = null; });
            new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student), objective, options,
                optimizer: p => optim.SGD(p, 0.5)).Train(data);
            return Snapshot(student);
        }

        Dictionary<string, Tensor> accumulated = Train(8, 4), whole = Train(32, 1);

        foreach ((string name, Tensor value) in whole)
        {
            (accumulated[name] - value).abs().max().item<float>().Should().BeLessThan(1e-6f, name);
        }
    }

    [Fact]
    public void Without_teachers_a_label_only_objective_trains_and_one_that_needs_a_teacher_is_refused()
    {
        var labeller = Teacher();
        List<DistillationBatch<Tensor>> data = Data(labeller, 8, 32, 21);
        var student = Student();

        var trainer = new DistillationTrainer<Tensor>([], DistillationModel.FromLogits(student), DistillationObjective.Create().HardTargets(1.0).Build(), Options(40));
        TrainingResult result = trainer.Train(data, data);

        result.Steps.Should().Be(40);
        result.LastEvaluation!.StudentMetric.Should().BeGreaterThan(0.5);
        double.IsNaN(result.LastEvaluation.TeacherMetric).Should().BeTrue("there is no teacher to measure");
        ((Action)(() => new DistillationTrainer<Tensor>([], DistillationModel.FromLogits(Student()), DistillationObjective.Create().SoftTargets(1.0).Build(), Options(1))))
            .Should().Throw<ArgumentException>().WithMessage("Give at least one teacher: terms of the objective read teacher outputs.*");
    }

    [Fact]
    public void Options_validation_names_every_bad_field()
    {
        var options = new DistillationTrainerOptions { LearningRate = -1, GradientAccumulationSteps = 0, Device = "gpu", KeepCheckpoints = 0 };

        Action create = () => new DistillationTrainer<Tensor>(DistillationModel.FromLogits(Teacher()), DistillationModel.FromLogits(Student()),
            DistillationObjective.Create().SoftTargets(1).Build(), options);

        create.Should().Throw<OptionsValidationException>()
            .Which.Failures.Should().BeEquivalentTo(
                "LearningRate must be a finite number greater than 0; got -1.",
                "GradientAccumulationSteps must be at least 1; got 0.",
                "Device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"; got gpu.",
                "KeepCheckpoints must be at least 1; got 0.");
    }

    [Theory]
    [InlineData(NonFiniteLossPolicy.Stop)]
    [InlineData(NonFiniteLossPolicy.SkipStep)]
    public void A_non_finite_term_stops_or_skips_and_never_corrupts_the_weights(NonFiniteLossPolicy policy)
    {
        var teacher = Teacher();
        var student = Student();
        var objective = DistillationObjective.Create()
            .SoftTargets(1.0)
            .Term("exploding", 1.0, c => c.Step == 2 ? c.Student.Logits.sum() * double.NaN : zeros(1).sum())
            .Build();
        var snapshots = new List<Dictionary<string, Tensor>>();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student), objective,
            Options(4, o => o.NonFiniteLoss = policy));
        var recorder = new SnapshotRecorder(student, snapshots);

        Func<TrainingResult> train = () => trainer.Train(Data(teacher, 4, 8, 5), callbacks: [recorder]);

        if (policy == NonFiniteLossPolicy.Stop)
        {
            train.Should().Throw<NonFiniteLossException>().Where(e => e.Step == 2 && e.Term == "exploding" && e.Epoch == 0 && e.MicroBatchInEpoch == 2)
                .WithMessage("The objective term \"exploding\" was NaN at step 3 (epoch 0, micro-batch 2 of the epoch, counting from 0); the weights were not updated.*");
            SameWeights(Snapshot(student), snapshots[^1]).Should().BeTrue("the failed step did not touch the weights");
        }
        else
        {
            TrainingResult result = train();
            result.SkippedSteps.Should().Be(1);
            result.Steps.Should().Be(4);
            SameWeights(snapshots[2], snapshots[1]).Should().BeTrue("the skipped step left the weights as they were");
            Snapshot(student).Values.Should().OnlyContain(t => t.isfinite().all().item<bool>());
        }
    }

    [Fact]
    public void Evaluation_reports_student_teacher_and_retention_and_early_stopping_can_end_a_run()
    {
        var teacher = Teacher();
        List<DistillationBatch<Tensor>> train = Data(teacher, 10, 32, 6), eval = Data(teacher, 4, 64, 7);
        var early = new EarlyStoppingCallback(patience: 1, minDelta: 10); // no change can be that large: stops at the 2nd evaluation
        var evaluations = new List<EvaluationReport>();
        var student = Student();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student),
            DistillationObjective.Create().SoftTargets(1.0).Build(), Options(100, o => o.EvaluationInterval = 10));

        TrainingResult result = trainer.Train(train, eval, [early, new Recorder(evaluations: evaluations)]);
        double accuracy;
        using (no_grad())
        {
            student.eval();
            accuracy = eval.Average(b => student.call(b.Inputs).argmax(-1).eq(b.Labels!).to(ScalarType.Float64).mean().item<double>());
        }

        result.StoppedEarly.Should().BeTrue();
        result.Steps.Should().Be(20);
        EvaluationReport last = result.LastEvaluation!;
        last.MetricName.Should().Be("accuracy");
        last.TeacherMetric.Should().Be(1.0, "the labels are the teacher's own predictions");
        last.StudentMetric.Should().BeApproximately(accuracy, 1e-12, "equal-sized batches: the mean of batch accuracies is the accuracy");
        last.Retention.Should().BeApproximately(accuracy / 1.0, 1e-12);
        evaluations.Should().HaveCountGreaterThanOrEqualTo(2);
    }

    private sealed class Recorder(List<StepReport>? steps = null, List<EvaluationReport>? evaluations = null) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => steps?.Add(report);

        public void OnEvaluation(EvaluationReport report, TrainerControl control) => evaluations?.Add(report);
    }

    private sealed class SnapshotRecorder(nn.Module student, List<Dictionary<string, Tensor>> snapshots) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => snapshots.Add(Snapshot(student));
    }
}
