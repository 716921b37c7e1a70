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
        MemoryPlan.Estimate(teacher, student, 4, 8, new MemoryPlanOptions { TeacherPrecision = ScalarType.BFloat16 }).TeacherWeights.Should().Be(teacherParameters * 2);
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
    public void Every_phase_follows_the_per_token_counts_derived_from_the_blocks()
    {
        manual_seed(1);
        GptModel teacher = Gpt(2), student = Gpt(3);
        const long tokens = 4 * 8, mask = 4 * 8 * 8 * 4, logits = tokens * 100 * 4;
        // W = 16, F = 64, H = 2. A GPT block keeps 9W + 2F + H = 274 floats per token and makes 11W + 2F + H = 306;
        // outside the blocks the embedding sum and the final norm's output are kept (2W), the token embeddings and their
        // sum are held to the end of the forward pass (2W).
        MemoryPlan plan = MemoryPlan.Estimate(teacher, student, batch: 4, length: 8);
        plan.Activations.Should().Be(tokens * 4 * (3 * 274 + 32) + mask);
        plan.Logits.Should().Be(2 * logits, "the student's and the float32 teacher's [32, 100]");
        plan.StudentForward.Should().Be(tokens * 4 * (2 * 16 + 16), "a block's two projection outputs and the token embeddings are made and not kept");
        plan.Loss.Should().Be(8 * logits, "at T = 2 the divergence makes eight [rows, V] tensors");
        plan.Recomputation.Should().Be(0);
        // The teacher's widest moment: a block's input and all it makes, beside the embedding stage.
        plan.TeacherForward.Should().Be(tokens * 4 * (32 + 16 + 306) + mask);
        plan.Total.Should().Be(plan.Resident + plan.Activations + plan.Logits + plan.Loss, "the loss phase is the largest here");

        MemoryPlan.Estimate(teacher, student, 4, 8, new MemoryPlanOptions { Temperature = 1 }).Loss.Should().Be(6 * logits);
        // In chunks of 10 rows (1,000 logits, 4,000 bytes): the gradient buffer and ten of a chunk's tensors, or four [rows, V].
        MemoryPlan.Estimate(teacher, student, 4, 8, new MemoryPlanOptions { LossChunkElements = 1000 }).Loss.Should().Be(Math.Max(logits + 10 * 4000, 4 * logits));
        MemoryPlan.Estimate(teacher, student, 4, 8, new MemoryPlanOptions { AttentionMask = false }).Activations.Should().Be(tokens * 4 * (3 * 274 + 32));
        MemoryPlan.Estimate(null, student, 4, 8).TeacherForward.Should().Be(0);
        // The fused head loss in chunks of 8 rows: no whole student logits; a chunk's logits (3,200 bytes) and eight of its
        // divergence tensors, the hidden states' gradient and buffer (2 · 32 · 16 floats), the head's three [100, 16].
        MemoryPlan fused = MemoryPlan.Estimate(teacher, student, 4, 8, new MemoryPlanOptions { FusedHeadChunkRows = 8 });
        fused.Logits.Should().Be(logits, "only the teacher's");
        fused.Loss.Should().Be(3200 + 8 * 3200 + 2 * 32 * 16 * 4 + 3 * 100 * 16 * 4);

        student.ActivationCheckpointing = true;
        MemoryPlan checkpointed = MemoryPlan.Estimate(teacher, student, 4, 8);
        checkpointed.Activations.Should().Be(tokens * 4 * (3 * 16 + 32) + mask, "only the three block inputs are kept");
        checkpointed.StudentForward.Should().Be(tokens * 4 * (306 + 16), "a block runs without gradients and holds all it makes");
        checkpointed.Recomputation.Should().Be(tokens * 4 * (306 + 64 + 2 * 16), "one block again, with its gradients flowing through");

        ((Action)(() => MemoryPlan.Estimate(null, nn.Linear(2, 2), 4, 8))).Should().Throw<ArgumentException>().WithMessage("student must be a GptModel, BertModel or LlamaModel*got Linear*");
        ((Action)(() => MemoryPlan.Estimate(null, student, 0, 8))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("batch must be at least 1; got 0.*");
        ((Action)(() => MemoryPlan.Estimate(null, student, 4, 8, new MemoryPlanOptions { Temperature = 0 }))).Should().Throw<ArgumentOutOfRangeException>()
            .WithMessage("options.Temperature must be finite and > 0; got 0.*");
    }

    [Fact]
    public void LoRA_keeps_each_adapters_down_projection_and_makes_three_outputs_per_adapted_layer()
    {
        manual_seed(1);
        GptModel student = Gpt(2);
        MemoryPlan plain = MemoryPlan.Estimate(null, student, 4, 8);
        Lora.Apply(student, new LoraOptions { Targets = [.. LoraTargets.GptBertAttention], Rank = 2 });
        MemoryPlan adapted = MemoryPlan.Estimate(null, student, 4, 8);
        // Per block: qkv (out 48) and output (out 16) adapted at r = 2.
        adapted.Activations.Should().Be(plain.Activations + 2 * 32 * 4 * (2 + 2));
        adapted.StudentForward.Should().Be(plain.StudentForward + 32 * 4 * (3 * (48 + 16) - (2 + 2)), "made and not kept");
    }

    [Fact]
    public void Llama_blocks_count_the_norms_rotary_embedding_and_repeated_keys()
    {
        manual_seed(1);
        // W = Q = 16, K = 8 (4 heads sharing 2 key-value heads), F = 32.
        var llama = new LlamaModel(new LlamaConfig { VocabSize = 50, ContextLength = 16, Width = 16, Heads = 4, KeyValueHeads = 2, Layers = 2, FeedForwardWidth = 32 });
        MemoryPlan plan = MemoryPlan.Estimate(null, llama, 2, 8, new MemoryPlanOptions { AttentionMask = false });
        // Kept per block: norms 4W, rotated queries Q, repeated keys and values 2Q, attention output and merged 2Q,
        // residuals 2W, feed-forward 4F, log-sum-exp H = 64 + 16 + 32 + 32 + 32 + 128 + 4 = 308; outside: 3W.
        plan.Activations.Should().Be(16 * 4 * (2 * 308 + 48));
        // Made per block: norms 6W, projections Q + 2K, rotary 4.5(Q + K), repeats 2Q, attention 2Q, projections and sums 4W, 4F, H
        // = 96 + 32 + 108 + 32 + 32 + 64 + 128 + 4 = 496.
        plan.StudentForward.Should().Be(16 * 4 * (496 - 308));
    }
}
