using System.Text;
using KnowledgeDistillation.DependencyInjection;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using TorchSharp;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Training;

[Collection(GlobalRngCollection.Name)] // two runs are compared bit for bit
public class DependencyInjectionTests
{
    private static IConfiguration Json(string json) =>
        new ConfigurationBuilder().AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(json))).Build();

    [Fact]
    public void Options_bind_from_an_appsettings_section_and_resolve_a_working_trainer()
    {
        IConfiguration configuration = Json("""
            {
              "KnowledgeDistillation": {
                "MaxSteps": 12,
                "LearningRate": 0.02,
                "WarmupSteps": 2,
                "Decay": "Cosine",
                "GradientAccumulationSteps": 2,
                "MaxGradientNorm": 0.5,
                "Device": "cpu",
                "Seed": 7,
                "NonFiniteLoss": "SkipStep",
                "TeacherPrecision": "BFloat16"
              }
            }
            """);
        using ServiceProvider provider = new ServiceCollection()
            .AddKnowledgeDistillation(configuration.GetSection(DistillationTrainerOptions.SectionName))
            .BuildServiceProvider();

        var factory = provider.GetRequiredService<IDistillationTrainerFactory>();
        DistillationTrainerOptions options = factory.Options;
        options.MaxSteps.Should().Be(12);
        options.LearningRate.Should().Be(0.02);
        options.Decay.Should().Be(LearningRateDecay.Cosine);
        options.MaxGradientNorm.Should().Be(0.5);
        options.NonFiniteLoss.Should().Be(NonFiniteLossPolicy.SkipStep);
        options.TeacherPrecision.Should().Be(TeacherPrecision.BFloat16);

        var teacher = Teacher();
        var data = Data(teacher, 6, 8, 9); // before the trainer casts the teacher to bfloat16
        var student = Student();
        DistillationTrainer<torch.Tensor> trainer = factory.Create(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student),
            DistillationObjective.Create().SoftTargets(1.0).HardTargets(0.5).Build());
        var steps = new StepRecorder();
        TrainingResult result = trainer.Train(data, callbacks: [steps]);

        result.Steps.Should().Be(12);
        teacher.parameters().Should().OnlyContain(p => p.dtype == torch.ScalarType.BFloat16, "TeacherPrecision halves the teacher's memory");
        // The bound schedule, computed here from its definition: 2 warm-up steps to 0.02, then cosine decay over the other 10.
        double[] expectedRates = Enumerable.Range(0, 12).Select(s => s < 2 ? 0.02 * (s + 1) / 2 : 0.02 * 0.5 * (1 + Math.Cos(Math.PI * (s - 2) / 10.0))).ToArray();
        steps.Reports.Select(r => r.LearningRate).Should().Equal(expectedRates, (a, e) => Math.Abs(a - e) < 1e-12);
        steps.Reports.Select(r => r.Rows).Should().OnlyContain(rows => rows == 16, "GradientAccumulationSteps = 2 makes each step two micro-batches of 8");
        // Every bound field took effect: the same options set in code train the same student bit for bit.
        var directData = Data(Teacher(), 6, 8, 9);
        torch.nn.Module<torch.Tensor, torch.Tensor> TrainedInCode(double maxGradientNorm)
        {
            var trained = Student();
            new DistillationTrainer<torch.Tensor>(DistillationModel.FromLogits(Teacher()), DistillationModel.FromLogits(trained),
                DistillationObjective.Create().SoftTargets(1.0).HardTargets(0.5).Build(),
                new DistillationTrainerOptions
                {
                    MaxSteps = 12, LearningRate = 0.02, WarmupSteps = 2, Decay = LearningRateDecay.Cosine, GradientAccumulationSteps = 2, MaxGradientNorm = maxGradientNorm,
                    Device = "cpu", Seed = 7, NonFiniteLoss = NonFiniteLossPolicy.SkipStep, TeacherPrecision = TeacherPrecision.BFloat16,
                }).Train(directData);
            return trained;
        }
        SameWeights(Snapshot(student), Snapshot(TrainedInCode(0.5))).Should().BeTrue();
        // ...and differ from a run with one field changed (the control: the comparison above can fail).
        SameWeights(Snapshot(student), Snapshot(TrainedInCode(0.25))).Should().BeFalse();
    }

    private sealed class StepRecorder : IDistillationCallback
    {
        public List<StepReport> Reports { get; } = [];

        public void OnStepEnd(StepReport report, TrainerControl control) => Reports.Add(report);
    }

    [Fact]
    public void Invalid_configuration_fails_on_first_use_naming_the_field()
    {
        IConfiguration configuration = Json("""{ "KnowledgeDistillation": { "LearningRate": 0, "LoggingInterval": 0 } }""");
        using ServiceProvider provider = new ServiceCollection()
            .AddKnowledgeDistillation(configuration.GetSection(DistillationTrainerOptions.SectionName))
            .BuildServiceProvider();

        Action resolve = () => _ = provider.GetRequiredService<IDistillationTrainerFactory>().Options;

        resolve.Should().Throw<OptionsValidationException>()
            .WithMessage("*LearningRate must be a finite number greater than 0; got 0.*LoggingInterval must be at least 1; got 0.*");
    }

    [Fact]
    public void Options_can_be_set_in_code()
    {
        using ServiceProvider provider = new ServiceCollection()
            .AddKnowledgeDistillation(o => { o.Epochs = 3; o.Device = "cpu"; })
            .BuildServiceProvider();

        provider.GetRequiredService<IDistillationTrainerFactory>().Options.Epochs.Should().Be(3);
        provider.GetRequiredService<IOptions<DistillationTrainerOptions>>().Value.Device.Should().Be("cpu");
    }
}
