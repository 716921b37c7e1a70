using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Students;

[Collection(GlobalRngCollection.Name)]
public sealed class MemoryPlanTests
{
    private static GptModel Gpt(int layers) =>
        new(new GptConfig { VocabSize = 100, ContextLength = 32, Width = 16, Heads = 2, Layers = layers, FeedForwardWidth = 64, Dropout = 0 });

    [Fact]
    public void The_weights_gradients_and_optimizer_state_are_counted_exactly_and_LoRA_trains_only_its_adapters()
    {
        manual_seed(1);
        GptModel teacher = Gpt(2), student = Gpt(1);
        long teacherParameters = teacher.parameters().Sum(p => p.numel()), studentParameters = student.parameters().Sum(p => p.numel());
        MemoryPlan plain = MemoryPlan.Estimate(teacher, student, batch: 4, length: 8);
        plain.TeacherWeights.Should().Be(teacherParameters * 4);
        plain.StudentWeights.Should().Be(studentParameters * 4);
        plain.Gradients.Should().Be(studentParameters * 4);
        plain.OptimizerState.Should().Be(studentParameters * 8, "AdamW keeps two moments per parameter");
        MemoryPlan.Estimate(teacher, student, 4, 8, teacherDtype: ScalarType.BFloat16).TeacherWeights.Should().Be(teacherParameters * 2);
        MemoryPlan.Estimate(null, student, 4, 8).TeacherWeights.Should().Be(0, "a cached teacher has no weights here");

        Lora.Apply(student, new LoraOptions { Targets = [.. LoraTargets.GptBertAll], Rank = 2 });
        MemoryPlan adapted = MemoryPlan.Estimate(teacher, student, 4, 8);
        // r · (in + out) per adapted layer: qkv 16 → 48, output 16 → 16, expand 16 → 64, project 64 → 16.
        long adapters = 2 * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16));
        adapted.Gradients.Should().Be(adapters * 4);
        adapted.OptimizerState.Should().Be(adapters * 8);
        adapted.StudentWeights.Should().Be((studentParameters + adapters) * 4);
    }

    [Fact]
    public void Activations_follow_the_derived_per_token_counts_and_checkpointing_keeps_block_inputs_plus_one_block()
    {
        manual_seed(1);
        GptModel student = Gpt(3);
        // Per block 8W + 2F = 8·16 + 2·64 = 256 floats per token, plus H·S = 2·8 = 16 with a mask; 2W for embeddings and the final norm.
        MemoryPlan unmasked = MemoryPlan.Estimate(null, student, batch: 4, length: 8, maskedAttention: false);
        unmasked.Activations.Should().Be(4 * 8 * (3 * 256 + 2 * 16) * 4);
        MemoryPlan.Estimate(null, student, 4, 8).Activations.Should().Be(4 * 8 * (3 * (256 + 16) + 2 * 16) * 4);
        student.ActivationCheckpointing = true;
        MemoryPlan.Estimate(null, student, 4, 8, maskedAttention: false).Activations.Should().Be(4 * 8 * (3 * 16 + 256 + 2 * 16) * 4);
        unmasked.Logits.Should().Be(4 * 8 * 100 * 4 * 6);

        ((Action)(() => MemoryPlan.Estimate(null, nn.Linear(2, 2), 4, 8))).Should().Throw<ArgumentException>().WithMessage("student must be a GptModel, BertModel or LlamaModel*got Linear*");
        ((Action)(() => MemoryPlan.Estimate(null, student, 0, 8))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("batch must be at least 1.*");
    }
}
