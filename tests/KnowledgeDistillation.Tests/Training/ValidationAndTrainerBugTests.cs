using System.Text;
using KnowledgeDistillation.DependencyInjection;
using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>Options, objective and trainer checks that used to fail late or silently, and the trainer bugs of the hardening review.</summary>
[Collection(GlobalRngCollection.Name)]
public class ValidationAndTrainerBugTests
{
    private static DistillationObjective Soft() => DistillationObjective.Create().SoftTargets(0.5).HardTargets(0.5).Build();

    [Fact]
    public void CheckpointDirectory_is_validated_when_the_trainer_is_constructed_naming_the_option()
    {
        using var folder = new TemporaryFolder();
        string file = folder.Write("not-a-folder", [1, 2, 3]);
        foreach ((string directory, string problem) in new[]
        {
            ("", "must be a folder path"), ("   ", "must be a folder path"), (file, "names an existing file"),
            (Path.Combine(file, "below"), "which is a file"), ("bad\0name", "characters a path cannot hold"),
        })
        {
            Action create = () => _ = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(Teacher()), DistillationModel.FromLogits(Student()), Soft(),
                Options(3, o => o.CheckpointDirectory = directory));
            create.Should().Throw<OptionsValidationException>().Which.Message.Should().Contain("CheckpointDirectory").And.Contain(problem);
        }
        File.ReadAllBytes(file).Should().Equal(1, 2, 3);
    }

    [Fact]
    public void An_empty_ResumeFrom_is_rejected()
    {
        Action create = () => _ = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(Teacher()), DistillationModel.FromLogits(Student()), Soft(),
            Options(3, o => o.ResumeFrom = ""));
        create.Should().Throw<OptionsValidationException>().WithMessage("*ResumeFrom*empty string*");
    }

    [Fact]
    public void Configuration_binding_rejects_a_misspelled_key_naming_it()
    {
        IConfiguration configuration = new ConfigurationBuilder().AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(
            """{ "KnowledgeDistillation": { "MaxSteps": 5, "LearningRat": 0.1 } }"""))).Build();
        using ServiceProvider provider = new ServiceCollection()
            .AddKnowledgeDistillation(configuration.GetSection(DistillationTrainerOptions.SectionName))
            .BuildServiceProvider();

        Action resolve = () => _ = provider.GetRequiredService<IDistillationTrainerFactory>().Options;

        resolve.Should().Throw<InvalidOperationException>().WithMessage("*LearningRat*");
    }

    [Fact]
    public void A_teacher_that_cannot_serve_a_term_is_named_by_the_parameter_the_caller_used()
    {
        DistillationObjective objective = DistillationObjective.Create().HiddenStateCosine(1.0, LayerMap.FromPairs([new LayerPair(0, 0)], 16, 16, 1, 1)).Build();
        var teacher = DistillationModel.FromLogits(Teacher());

        FluentActions.Invoking(() => new DistillationTrainer<Tensor>(teacher, DistillationModel.FromLogits(Student()), objective, Options(1)))
            .Should().Throw<ArgumentException>().WithMessage("Term \"cosine\" needs HiddenStates from teacher 0, which provides only Logits*").Which.ParamName.Should().Be("teacher");
        FluentActions.Invoking(() => new DistillationTrainer<Tensor>([teacher], DistillationModel.FromLogits(Student()), objective, Options(1)))
            .Should().Throw<ArgumentException>().Which.ParamName.Should().Be("teachers");
    }

    [Fact]
    public void A_negative_term_weight_is_rejected_where_it_is_given_naming_the_term()
    {
        DistillationObjectiveBuilder builder = DistillationObjective.Create().SoftTargets(1.0);

        Action add = () => builder.HardTargets(Schedule.Linear(1.0, -0.5, 10));

        add.Should().Throw<ArgumentException>().WithMessage("Term \"hard\": the weight must be a finite number, 0 or more; got -0.5*").Which.ParamName.Should().Be("weight");
    }

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    public void A_weight_or_temperature_that_is_not_finite_is_refused_where_it_is_given_naming_that_parameter(double value)
    {
        Action constant = () => DistillationObjective.Create().HardTargets(value);
        Action soft = () => DistillationObjective.Create().SoftTargets(value);
        Action temperature = () => DistillationObjective.Create().SoftTargets(1.0, temperature: value);
        Action beta = () => DistillationObjective.Create().GeneralizedJensenShannon(1.0, beta: value);
        Action custom = () => DistillationObjective.Create().Term("mine", value, c => c.Student.Logits.sum());
        Action linear = () => Schedule.Linear(0, value, 10);

        constant.Should().Throw<ArgumentException>().WithMessage("Term \"hard\": the weight must be a finite number, 0 or more*").Which.ParamName.Should().Be("weight");
        soft.Should().Throw<ArgumentException>().WithMessage("Term \"soft\": the weight must be*").Which.ParamName.Should().Be("weight");
        temperature.Should().Throw<ArgumentException>().WithMessage("Term \"soft\": the temperature must be a finite number greater than 0*").Which.ParamName.Should().Be("temperature");
        beta.Should().Throw<ArgumentException>().WithMessage("Term \"jsd\": the β must be in [0, 1]*").Which.ParamName.Should().Be("beta");
        custom.Should().Throw<ArgumentException>().WithMessage("Term \"mine\": the weight must be*").Which.ParamName.Should().Be("weight");
        linear.Should().Throw<ArgumentOutOfRangeException>().WithMessage("A schedule's end must be a finite number*").Which.ParamName.Should().Be("end");
    }

    [Fact]
    public void A_temperature_schedule_that_reaches_zero_is_rejected_when_the_term_is_added()
    {
        Action add = () => DistillationObjective.Create().SoftTargets(1.0, temperature: Schedule.Linear(4, 0, 100));

        add.Should().Throw<ArgumentException>().WithMessage("Term \"soft\": the temperature must be a finite number greater than 0; got 0*");
    }

    [Fact]
    public void Teacher_weight_count_and_teacher_index_are_checked_when_the_trainer_is_constructed()
    {
        var teacher = DistillationModel.FromLogits(Teacher());
        Action weights = () => _ = new DistillationTrainer<Tensor>([teacher, teacher], DistillationModel.FromLogits(Student()),
            DistillationObjective.Create().TeacherWeights(1, 2, 3).SoftTargets(1.0).Build(), Options(2));
        weights.Should().Throw<ArgumentException>().WithMessage("The objective has 3 teacher weights (TeacherWeights) but the trainer was given 2 teachers*");

        GptModel gpt = TinyModels.GptModel();
        GptModel student = TinyModels.GptModel(seed: 2);
        LayerMap map = KnowledgeDistillation.Students.LayerSelection.FirstK.Map(gpt.Config, student.Config);
        Action index = () => _ = new DistillationTrainer<TokenBatch>([gpt], student,
            DistillationObjective.Create().HiddenStateMse(1.0, map, teacher: 1).Build(), Options(2));
        index.Should().Throw<ArgumentException>().WithMessage("Term \"hidden_mse\" matches teacher 1, but the trainer was given 1 teacher(s)*");

        Action logitsOnly = () => _ = new DistillationTrainer<Tensor>(teacher, DistillationModel.FromLogits(Student()),
            DistillationObjective.Create().Term("hidden", 1.0, c => c.Student.Logits.sum(), teacherNeeds: new OutputRequest(HiddenStates: true)).Build(), Options(2));
        logitsOnly.Should().Throw<ArgumentException>().WithMessage("Term \"hidden\" needs HiddenStates from teacher 0, which provides only Logits*");
    }

    [Fact]
    public void Two_objectives_built_from_one_builder_share_no_parameters()
    {
        LayerMap map = LayerMap.FromPairs([new LayerPair(0, 1)], teacherWidth: 8, studentWidth: 4, teacherHeads: 2, studentHeads: 2);
        DistillationObjectiveBuilder builder = DistillationObjective.Create().HiddenStateMse(1.0, map).HiddenStateCosine(1.0, map);

        DistillationObjective first = builder.Build(), second = builder.Build();

        first.parameters().Should().HaveCount(4);
        first.parameters().Select(p => p.Handle).Should().NotIntersectWith(second.parameters().Select(p => p.Handle));
        using (no_grad()) first.parameters().First().fill_(3.0);
        second.parameters().First().eq(3.0).all().item<bool>().Should().BeFalse();
    }

    [Fact]
    public void A_batch_mask_shaped_unlike_its_labels_is_an_error_naming_both_shapes()
    {
        var teacher = Teacher();
        List<DistillationBatch<Tensor>> data = Data(teacher, 2, 8, 3)
            .Select(b => b with { Mask = ones(9, dtype: ScalarType.Bool) }).ToList();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student()), Soft(), Options(2));

        Action train = () => trainer.Train(data);

        train.Should().Throw<ArgumentException>().WithMessage("The batch's Mask has shape [9] but its Labels have shape [8]*");
    }

    [Fact]
    public void The_objective_rejects_a_context_mask_shaped_unlike_the_logit_rows()
    {
        DistillationObjective objective = DistillationObjective.Create().SoftTargets(1.0).Build();
        var context = new DistillationContext([new ModelOutput(zeros(4, 3))], new ModelOutput(zeros(4, 3)), null, ones(5, dtype: ScalarType.Bool), 0);

        Action compute = () => objective.Compute(context);

        compute.Should().Throw<ArgumentException>().WithMessage("The batch's mask has shape [5], but the logits [4, 3] need one entry per row, [4]*");
    }

    [Fact]
    public void The_students_attention_mask_as_fallback_does_not_apply_to_per_example_logits()
    {
        // A sequence classifier: logits [B, C], and the context's mask is the student's token-level attention mask [B, S].
        DistillationObjective objective = DistillationObjective.Create().SoftTargets(1.0).Build();
        Tensor attention = ones(4, 7, dtype: ScalarType.Int64), student = randn(4, 3), teacher = randn(4, 3);
        var context = new DistillationContext([new ModelOutput(teacher)], new ModelOutput(student, attentionMask: attention), null, attention, 0);

        double value = objective.Compute(context).Total.item<float>();

        value.Should().BeApproximately(new SoftTargetKLLoss(2.0).forward(student, teacher).item<float>(), 1e-6);
    }

    [Fact]
    public void A_libtorch_error_in_a_models_forward_pass_names_the_model_the_step_and_the_input()
    {
        var teacher = Teacher();
        List<DistillationBatch<Tensor>> wide = Data(teacher, 2, 8, 3).Select(b => b with { Inputs = zeros(8, Features + 1) }).ToList();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student()), Soft(), Options(2));

        Action train = () => trainer.Train(wide);

        train.Should().Throw<InvalidOperationException>()
            .WithMessage("Teacher 0's forward pass failed at step 1 (epoch 0, micro-batch 0 of the epoch) on input Float32 [8, 11]: mat1 and mat2 shapes cannot be multiplied*")
            .WithInnerException<System.Runtime.InteropServices.ExternalException>();
    }

    [Fact]
    public void Counting_an_epoch_of_generated_batches_releases_them_and_leaves_the_RNG_where_it_was()
    {
        var teacher = Teacher();
        var generated = new List<Tensor>();
        IEnumerable<DistillationBatch<Tensor>> Generate()
        {
            for (int i = 0; i < 4; i++)
            {
                Tensor x = randn(8, Features);
                generated.Add(x);
                Tensor y;
                using (no_grad()) y = teacher.call(x).argmax(-1);
                yield return new DistillationBatch<Tensor>(x, y) { DisposeAfterUse = true };
            }
        }
        var byEpochs = Student(seed: 9);
        var bySteps = Student(seed: 9);

        TrainingResult counted = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(byEpochs), Soft(),
            Options(1, o => { o.MaxSteps = null; o.Epochs = 2; })).Train(_ => Generate());
        int countingPass = 4;
        generated.Take(countingPass).Should().OnlyContain(t => t.IsInvalid, "the counting pass releases what it generated");
        generated.Clear();
        TrainingResult planned = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(bySteps), Soft(),
            Options(8)).Train(_ => Generate());

        counted.Steps.Should().Be(8);
        planned.Steps.Should().Be(8);
        SameWeights(Snapshot(byEpochs), Snapshot(bySteps)).Should().BeTrue("counting consumed no random numbers of the run");
    }

    [Fact]
    public void The_teacher_metric_is_measured_for_each_evaluation_dataset()
    {
        var teacher = Teacher();
        List<DistillationBatch<Tensor>> a = Data(teacher, 2, 16, 4);
        // Dataset b: labels that disagree with the teacher on every row, so its teacher accuracy is 0, not a's 1.
        List<DistillationBatch<Tensor>> b = a.Select(x => x with { Labels = (x.Labels! + 1).remainder(Classes) }).ToList();
        var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student()), Soft(), Options(1));

        EvaluationReport onA = trainer.Evaluate(a), onB = trainer.Evaluate(b);

        onA.TeacherMetric.Should().Be(1.0);
        onB.TeacherMetric.Should().Be(0.0);
    }

    [Fact]
    public void Unlabelled_padded_token_batches_are_token_normalised_through_the_attention_mask()
    {
        GptModel teacher = TinyModels.GptModel(seed: 1), student = TinyModels.GptModel(seed: 2);
        Tensor ids = TinyModels.Ids(3, 2, 6, teacher.Config.VocabSize);
        Tensor attention = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0 }, 2, 6);
        var batch = new DistillationBatch<TokenBatch>(new TokenBatch(ids, attention));
        StepReport? report = null;
        var trainer = new DistillationTrainer<TokenBatch>(teacher, student, DistillationObjective.Create().SoftTargets(1.0).Build(), Options(1));

        trainer.Train([batch], callbacks: [new OnStep(r => report = r)]);

        report!.Rows.Should().Be(8, "8 real tokens; the losses average over them, so the accumulation weights must count them too");
    }

    [Fact]
    public void A_bfloat16_teacher_with_captured_hidden_states_accepts_float32_batches()
    {
        var teacherModule = nn.Sequential(("hidden", nn.Linear(Features, 16)), ("act", nn.Tanh()), ("out", nn.Linear(16, Classes)));
        using CapturingModel teacher = DistillationModel.WithCapturedHiddenStates(teacherModule, "hidden");
        var studentModule = nn.Sequential(("hidden", nn.Linear(Features, 16)), ("act", nn.ReLU()), ("out", nn.Linear(16, Classes)));
        using CapturingModel student = DistillationModel.WithCapturedHiddenStates(studentModule, "hidden");
        LayerMap map = LayerMap.FromPairs([], 16, 16, 1, 1, includeEmbeddings: true);
        var trainer = new DistillationTrainer<Tensor>(teacher, student, DistillationObjective.Create().SoftTargets(1.0).HiddenStateMse(1.0, map).Build(),
            Options(2, o => o.TeacherPrecision = TeacherPrecision.BFloat16));

        TrainingResult result = trainer.Train(Data(Teacher(), 2, 8, 5));

        result.Steps.Should().Be(2);
        result.LastStep!.Terms["hidden_mse"].Should().BeGreaterThan(0).And.Match(v => double.IsFinite(v));
    }

    [Fact]
    public void Hidden_state_terms_use_the_batch_mask_before_the_students_attention_mask()
    {
        var loss = new HiddenStateMseLoss();
        Tensor s = randn(1, 4, 3), t = randn(1, 4, 3);
        Tensor batchMask = tensor(new[] { true, true, false, false }, 1, 4), attention = ones(1, 4, dtype: ScalarType.Int64);
        LayerMap map = LayerMap.FromPairs([], 3, 3, 1, 1, includeEmbeddings: true);
        DistillationObjective objective = DistillationObjective.Create().HiddenStateMse(1.0, map).Build();
        var context = new DistillationContext([new ModelOutput(zeros(1, 4, 5), [t])], new ModelOutput(zeros(1, 4, 5), [s], attentionMask: attention), null, batchMask, 0);

        double value = objective.Compute(context).Total.item<float>();

        value.Should().BeApproximately(loss.forward(s, t, batchMask).item<float>(), 1e-6);
        value.Should().NotBeApproximately(loss.forward(s, t, attention).item<float>(), 1e-6);
    }

    private sealed class OnStep(Action<StepReport> action) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => action(report);
    }
}
