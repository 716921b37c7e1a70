using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Students;

/// <summary>
/// What one distillation step will hold, in bytes, estimated before the run from the models' shapes and the settings:
/// the weights, the gradients and AdamW's two moments of what trains, the student's activations kept for its backward
/// pass, and the logits with the loss's intermediates. An estimate for planning (does it fit?), measured against real
/// steps in docs/performance.md; framework and runtime overhead (the allocator, the .NET runtime, libtorch's own
/// buffers) is not in it.
/// </summary>
/// <param name="TeacherWeights">The teacher's parameters at its precision (0 for a cached or remote teacher).</param>
/// <param name="StudentWeights">All of the student's parameters, frozen ones included.</param>
/// <param name="Gradients">One float per trainable parameter.</param>
/// <param name="OptimizerState">AdamW's first and second moments: two floats per trainable parameter.</param>
/// <param name="TeacherForward">The teacher's forward pass at its widest (one block's working set and its logits); nothing of it is kept.</param>
/// <param name="Activations">The student's tensors kept for the backward pass (per block, or only block inputs plus one block when checkpointing).</param>
/// <param name="Logits">The student's and teacher's logits and the soft-target and cross-entropy intermediates.</param>
public sealed record MemoryPlan(long TeacherWeights, long StudentWeights, long Gradients, long OptimizerState, long TeacherForward, long Activations, long Logits)
{
    /// <summary>
    /// The step's peak: the weights, gradients and optimizer state, plus the larger of the teacher's forward pass and
    /// the student's loss phase (its kept activations with the logits and the loss's intermediates); the two do not overlap.
    /// </summary>
    public long Total => TeacherWeights + StudentWeights + Gradients + OptimizerState + Math.Max(TeacherForward, Activations + Logits);

    /// <summary>
    /// Estimates a step of <paramref name="student"/> (a reference GPT, BERT or Llama-family model; its
    /// <see cref="ReferenceModel{TConfig}.ActivationCheckpointing"/> and frozen parameters, e.g. LoRA, are read from it)
    /// distilled from <paramref name="teacher"/> (a reference model, or null for a teacher cache or a remote teacher),
    /// for micro-batches of <paramref name="batch"/> sequences of <paramref name="length"/> tokens, trained with AdamW.
    /// </summary>
    /// <exception cref="ArgumentException">The student is not a reference model, or a size is below 1.</exception>
    /// <param name="teacher">A reference model, or null for a cached or remote teacher.</param>
    /// <param name="student">A reference model; its checkpointing setting and frozen parameters are read from it.</param>
    /// <param name="teacherDtype">The teacher's precision in the run (the trainer's TeacherPrecision); null: its own.</param>
    /// <param name="batch">Sequences per micro-batch.</param>
    /// <param name="length">Tokens per sequence.</param>
    /// <param name="maskedAttention">Whether batches carry an attention mask (padding): attention then runs through the
    /// explicit path, which keeps each block's [B, H, S, S] probabilities, instead of the fused kernel.</param>
    public static MemoryPlan Estimate(nn.Module? teacher, nn.Module student, long batch, long length, ScalarType? teacherDtype = null, bool maskedAttention = true)
    {
        ArgumentNullException.ThrowIfNull(student);
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "batch must be at least 1.");
        if (length < 1) throw new ArgumentOutOfRangeException(nameof(length), length, "length must be at least 1.");
        Shape s = Shape.Of(student, nameof(student));
        long micro = batch; // each micro-batch is a batch of this size; accumulation adds no activations
        long tokens = micro * length;

        long teacherBytes = teacher is null ? 0 : teacherDtype is ScalarType dtype ? ElementBytes(dtype) : teacher.parameters().FirstOrDefault()?.element_size() ?? 4;
        long teacherWeights = teacher is null ? 0 : teacher.parameters().Sum(p => p.numel()) * teacherBytes;
        long studentWeights = student.parameters().Sum(p => p.numel() * p.element_size());
        long trainable = student.parameters().Where(p => p.requires_grad).Sum(p => p.numel());

        // Kept for backward per block, in floats per token (derived from what each operation saves):
        //   GPT/BERT block: norm input W, projection input W, q, k, v 3W, attention output W, second norm input W,
        //   feed-forward input W, activation input F, projection input F  →  8W + 2F
        //   Llama block: norm input W, projection input W, rotated q W, k and v after repeat to every head 2W,
        //   attention output W, second norm input W, feed-forward input W, gate and up outputs 2F, their product F  →  8W + 3F
        long perBlock = s.Llama ? 8L * s.Width + 3L * s.FeedForward : 8L * s.Width + 2L * s.FeedForward;
        //   with a mask, the attention probabilities too: H · S floats per token (the softmax output the product with V keeps)
        if (maskedAttention) perBlock += (long)s.Heads * length;
        long adapters = student.named_parameters().Where(p => p.parameter.requires_grad && p.name.EndsWith(".lora_A.weight", StringComparison.Ordinal))
            .Sum(p => p.parameter.shape[0]);
        long kept = s.Checkpointing
            ? s.Layers * (long)s.Width + perBlock // block inputs, then one block recomputed at a time
            : s.Layers * perBlock;
        kept += adapters; // each adapter keeps A x (r floats per token)
        kept += 2L * s.Width; // embeddings and final norm input
        // The teacher's forward keeps nothing, but one block's working set is alive at a time: its hidden states, the
        // feed-forward expansion and, with a mask, the scores, the masked scores and the probabilities ([B, H, S, S] each).
        long teacherWorking = teacher is null ? 0 : Shape.Of(teacher, nameof(teacher)) is var t
            ? (2L * t.Width + t.FeedForward + (maskedAttention ? 3L * t.Heads * length : 0)) * teacherBytes
            : 0;
        long activations = tokens * kept * 4;
        long teacherForward = teacher is null ? 0 : tokens * teacherWorking + (Shape.Of(teacher, nameof(teacher)) is var tt && tt.TokenLevelLogits ? tokens : micro) * tt.Classes * teacherBytes;

        // Logits: the student's, their gradient, the soft-target log-probabilities at T and the cross-entropy's, the
        // teacher's probabilities at T (and its own logits), per row of the head's output.
        long rows = s.TokenLevelLogits ? tokens : micro;
        long logits = rows * s.Classes * 4 * 6;

        return new MemoryPlan(teacherWeights, studentWeights, trainable * 4, trainable * 8, teacherForward, activations, logits);
    }

    /// <summary>A one-line table row in megabytes.</summary>
    public override string ToString() =>
        $"teacher {Mb(TeacherWeights)}, student {Mb(StudentWeights)}, gradients {Mb(Gradients)}, optimizer {Mb(OptimizerState)}, teacher forward {Mb(TeacherForward)}, activations {Mb(Activations)}, logits {Mb(Logits)}; peak {Mb(Total)}";

    private static long ElementBytes(ScalarType dtype)
    {
        using Tensor probe = empty(0, dtype);
        return probe.element_size();
    }

    private static string Mb(long bytes) => $"{bytes / (double)(1 << 20):F1} MB";

    private sealed record Shape(int Layers, int Width, int FeedForward, int Heads, long Classes, bool Llama, bool TokenLevelLogits, bool Checkpointing)
    {
        public static Shape Of(nn.Module model, string parameter) => model switch
        {
            GptModel g => new(g.Config.Layers, g.Config.Width, g.Config.EffectiveFeedForwardWidth, g.Config.Heads, g.Config.VocabSize, false, true, g.ActivationCheckpointing),
            LlamaModel l => new(l.Config.Layers, l.Config.Width, l.Config.EffectiveFeedForwardWidth, l.Config.Heads, l.Config.VocabSize, true, true, l.ActivationCheckpointing),
            BertModel b => new(b.Config.Layers, b.Config.Width, b.Config.EffectiveFeedForwardWidth, b.Config.Heads,
                b.Config.Head switch { BertHead.MaskedLM => b.Config.VocabSize, BertHead.SequenceClassification => b.Config.NumLabels, _ => b.Config.Width },
                false, b.Config.Head != BertHead.SequenceClassification, b.ActivationCheckpointing),
            _ => throw new ArgumentException($"{parameter} must be a GptModel, BertModel or LlamaModel to estimate its activations; got {model.GetType().Name}.", parameter),
        };
    }
}
