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
        DistillationTrainer<torch.Tensor> trainer = factory.Create(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(Student()),
            DistillationObjective.Create().SoftTargets(1.0).HardTargets(0.5).Build());
        TrainingResult result = trainer.Train(data);

        result.Steps.Should().Be(12);
        result.LastStep!.Loss.Should().BeGreaterThan(0);
        teacher.parameters().Should().OnlyContain(p => p.dtype == torch.ScalarType.BFloat16, "TeacherPrecision halves the teacher's memory");
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
