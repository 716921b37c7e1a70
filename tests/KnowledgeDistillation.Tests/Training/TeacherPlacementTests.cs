using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Microsoft.Extensions.Options;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Remote.ServerFixtures;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>
/// A teacher on a device of its own. This machine has no GPU, so the placement runs CPU to CPU: the same code path (inputs
/// moved to the teacher's device, its output moved back once) that a CUDA student with a CPU teacher takes.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public sealed class TeacherPlacementTests
{
    private static float[] Train(GptModel teacher, Action<DistillationTrainerOptions> change, out DistillationTrainer<TokenBatch> trainer)
    {
        GptModel student = Student(5);
        trainer = new DistillationTrainer<TokenBatch>(teacher, student,
            DistillationObjective.Create().SoftTargets(0.8, temperature: 2.0).HardTargets(0.2).Build(),
            TrainingFixtures.Options(4, change));
        trainer.Train(Batches(2));
        return Weights(student);
    }

    [Fact]
    public void A_teacher_on_its_own_device_trains_the_student_exactly_as_one_beside_it()
    {
        float[] beside = Train(Teacher(3), _ => { }, out _);
        GptModel teacher = Teacher(3);
        float[] placed = Train(teacher, o => o.TeacherDevice = "cpu", out DistillationTrainer<TokenBatch> trainer);
        trainer.TeacherDevice.type.Should().Be(DeviceType.CPU);
        teacher.parameters().Should().OnlyContain(p => p.device_type == DeviceType.CPU && !p.requires_grad);
        placed.Should().Equal(beside, "moving inputs and outputs between two equal devices changes no value");
    }

    [Fact]
    public void A_bfloat16_teacher_on_the_cpu_path_trains_from_logits_within_bfloat16_rounding_of_the_float32_teachers()
    {
        float[] full = Train(Teacher(3), o => o.TeacherDevice = "cpu", out _);
        GptModel teacher = Teacher(3);
        float[] half = Train(teacher, o =>
        {
            o.TeacherDevice = "cpu";
            o.TeacherPrecision = TeacherPrecision.BFloat16;
        }, out _);
        teacher.parameters().Should().OnlyContain(p => p.dtype == ScalarType.BFloat16, "the teacher is held in bfloat16");
        half.Should().OnlyContain(w => float.IsFinite(w));
        full.Zip(half).Max(p => Math.Abs(p.First - p.Second)).Should().BeGreaterThan(0, "bfloat16 rounds the teacher's outputs");
        // What the student learns from: the bfloat16 teacher's logits against the float32 teacher's (bfloat16 keeps 8 bits).
        using (no_grad())
        {
            TokenBatch inputs = Batches(1)[0].Inputs;
            Tensor exact = Teacher(3).Run(inputs, OutputRequest.LogitsOnly).Logits;
            Tensor rounded = teacher.Run(inputs, OutputRequest.LogitsOnly).Logits.to(ScalarType.Float32);
            double scale = exact.abs().max().item<float>();
            ((rounded - exact).abs().max().item<float>() / scale).Should().BeGreaterThan(0).And.BeLessThan(0.03);
        }
    }

    [Fact]
    public void An_unknown_teacher_device_is_refused_by_name()
    {
        Action create = () => new DistillationTrainer<TokenBatch>(Teacher(3), Student(5), DistillationObjective.Create().SoftTargets(1.0).Build(),
            TrainingFixtures.Options(1, o => o.TeacherDevice = "gpu"));
        create.Should().Throw<OptionsValidationException>().WithMessage("*TeacherDevice must be null (the student's device), \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"; got gpu.*");
    }
}
