using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Students;

/// <summary>
/// What one distillation step will hold, in bytes, estimated before the run from the models' shapes and the settings:
/// the weights, the gradients and AdamW's two moments of what trains, and the step's transient memory, whose peak is
/// the largest of its phases (the teacher's forward pass; the student's forward pass; the loss and the start of the
/// backward pass; with checkpointing, a block recomputed in the backward pass). Every term is derived from what the
/// reference models' operations create and what autograd keeps, not fitted; docs/performance.md compares it with
/// measured peaks. The runtime's own memory (the .NET heap, libtorch's and the allocator's) is not in it.
/// </summary>
/// <remarks>
/// The step modelled is the trainer's default objective: a soft-target divergence over <c>[rows, V]</c> logits plus
/// hard-target cross-entropy. Losses on hidden states or attention maps add their own inputs, not estimated here.
/// </remarks>
/// <param name="TeacherWeights">The teacher's parameters at its precision (0 for a cached or remote teacher).</param>
/// <param name="StudentWeights">All of the student's parameters, frozen ones included.</param>
/// <param name="Gradients">One float per trainable parameter.</param>
/// <param name="OptimizerState">AdamW's first and second moments: two floats per trainable parameter.</param>
/// <param name="TeacherForward">The teacher's forward pass at its widest: one block's tensors (all held until the block ends), or its head.</param>
/// <param name="Activations">The student's tensors kept for the backward pass (per block, or only block inputs when checkpointing).</param>
/// <param name="Logits">The student's and the teacher's logits, held from their forward passes to the end of the micro-batch.</param>
/// <param name="StudentForward">What a student block makes in its forward pass besides what it keeps (with checkpointing: all of it).</param>
/// <param name="Loss">The loss's intermediates at their peak, or those it keeps plus the logits' gradients at the start of the backward pass, whichever is larger.</param>
/// <param name="Recomputation">With checkpointing, one block run again in the backward pass with its gradients; 0 without.</param>
public sealed record MemoryPlan(long TeacherWeights, long StudentWeights, long Gradients, long OptimizerState, long TeacherForward, long Activations, long Logits,
    long StudentForward, long Loss, long Recomputation)
{
    /// <summary>What lives through the whole run: the weights, gradients and optimizer state.</summary>
    public long Resident => TeacherWeights + StudentWeights + Gradients + OptimizerState;

    /// <summary>
    /// The step's peak: <see cref="Resident"/> plus the largest phase: the teacher's forward pass, or the student's
    /// kept activations and the logits with the largest of the student's forward transients, the loss and the recomputation.
    /// </summary>
    public long Total => Resident + Math.Max(TeacherForward, Activations + Logits + Math.Max(StudentForward, Math.Max(Loss, Recomputation)));

    /// <summary>
    /// Estimates a step of <paramref name="student"/> (a reference GPT, BERT or Llama-family model; its
    /// <see cref="ReferenceModel{TConfig}.ActivationCheckpointing"/> and frozen parameters and LoRA adapters are read from
    /// it) distilled from <paramref name="teacher"/> (a reference model, or null for a teacher cache or a remote teacher),
    /// for micro-batches of <paramref name="batch"/> sequences of <paramref name="length"/> tokens, trained with AdamW.
    /// </summary>
    /// <exception cref="ArgumentException">A model is not a reference model.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A size is below 1, or an option is out of range.</exception>
    public static MemoryPlan Estimate(nn.Module? teacher, nn.Module student, long batch, long length, MemoryPlanOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(student);
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"batch must be at least 1; got {batch}.");
        if (length < 1) throw new ArgumentOutOfRangeException(nameof(length), length, $"length must be at least 1; got {length}.");
        options ??= new MemoryPlanOptions();
        if (!double.IsFinite(options.Temperature) || options.Temperature <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Temperature, $"options.Temperature must be finite and > 0; got {options.Temperature}.");
        if (options.FusedHeadChunkRows is < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.FusedHeadChunkRows, $"options.FusedHeadChunkRows must be at least 1; got {options.FusedHeadChunkRows}.");
        if (options.LossChunkElements < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.LossChunkElements, $"options.LossChunkElements must be at least 1; got {options.LossChunkElements}.");
        MemoryBlockShape s = MemoryBlockShape.Of(student, nameof(student));
        MemoryBlockShape? t = teacher is null ? null : MemoryBlockShape.Of(teacher, nameof(teacher));
        long tokens = batch * length;
        long mask = options.AttentionMask ? batch * length * length * 4 : 0;

        long teacherBytes = teacher is null ? 0 : options.TeacherPrecision is ScalarType dtype ? ElementBytes(dtype) : teacher.parameters().FirstOrDefault()?.element_size() ?? 4;
        long teacherWeights = teacher is null ? 0 : teacher.parameters().Sum(p => p.numel()) * teacherBytes;
        long studentWeights = student.parameters().Sum(p => p.numel() * p.element_size());
        long trainable = student.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
        LoraShape lora = LoraShape.Of(student, s.Layers);

        // Logits, held from the forward passes to the end of the micro-batch: the student's in float32, the teacher's at its precision.
        long rows = s.TokenLevelLogits ? tokens : batch;
        long studentLogits = rows * s.Classes * 4;
        long teacherLogits = t is null ? 0 : rows * t.Classes * teacherBytes;

        // Kept activations: every block's saved tensors, or with checkpointing only each block's input.
        long perBlockKept = s.KeptPerToken + lora.KeptPerBlock;
        long kept = tokens * 4 * (s.Checkpointing ? s.Layers * (long)s.Width + s.StackKept : s.Layers * perBlockKept + s.StackKept) + mask;
        // A block's forward: with gradients, what it makes beyond what autograd keeps (freed when the block ends); under
        // checkpointing's no-gradient forward, everything it makes.
        long blockMade = tokens * 4 * (s.MadePerToken + lora.MadePerBlock);
        long studentForward = (s.Checkpointing ? blockMade : blockMade - tokens * 4 * perBlockKept) + tokens * 4 * Math.Max(0, s.EmbeddingMade - s.Width);
        // Checkpointing's backward: one block made again with gradients, plus the gradients flowing through it (one [T, F]
        // and two [T, D] at a time).
        long recomputation = s.Checkpointing ? blockMade + tokens * 4 * (s.FeedForward + 2L * s.Width) : 0;

        long loss;
        if (options.FusedHeadChunkRows is int chunkRows)
        {
            // The fused head loss: no whole logits. A chunk's logits and the divergence over them (itself chunked above the
            // loss's chunk size), beside the hidden states' gradient and its zero-filled buffer (2 · [rows, D]) and the head
            // weight's gradient, its buffer and the chunk's contribution (3 · [V, D]).
            long chunk = Math.Min(chunkRows, rows);
            long chunkLogits = chunk * s.Classes * 4;
            loss = chunkLogits + LossPeak(chunkLogits, chunk, s.Classes, options, 0) + 2 * rows * s.Width * 4 + 3 * s.Classes * s.Width * 4;
            studentLogits = 0;
        }
        else
        {
            loss = LossPeak(studentLogits, rows, s.Classes, options, teacherBytes is 4 or 0 ? 0 : rows * s.Classes * 4);
        }
        // The teacher's forward pass keeps nothing, but a block holds all it makes until it ends, beside its input and
        // the embedding stage's tensors (held until the pass ends); then the head: the last state, its norm and the logits.
        long teacherForward = t is null ? 0 : Math.Max(
            tokens * teacherBytes * (t.EmbeddingMade + t.Width + t.MadePerToken) + mask,
            tokens * teacherBytes * (t.EmbeddingMade + 2L * t.Width) + teacherLogits);

        return new MemoryPlan(teacherWeights, studentWeights, trainable * 4, trainable * 8, teacherForward, kept, studentLogits + teacherLogits,
            studentForward, loss, recomputation);
    }

    /// <summary>
    /// The loss phase over <paramref name="logits"/> bytes (M) of student logits. Whole (M at most the chunk size): the
    /// divergence makes log-softmaxes of both sides, their exponent, difference and product (6M; 8M with both sides first
    /// divided by T), while the backward pass starts from what they keep (3M), cross-entropy's log-softmax (M) and the
    /// logits' two incoming gradients (2M). In chunks: the gradient buffer (M) and one chunk's ten intermediates, or the
    /// buffer, cross-entropy's log-softmax and the backward pass's two gradients (4M).
    /// </summary>
    private static long LossPeak(long logits, long rows, long classes, MemoryPlanOptions options, long teacherCopy)
    {
        if (rows * classes <= options.LossChunkElements)
        {
            long divergence = (options.Temperature == 1.0 ? 6 : 8) * logits;
            return Math.Max(divergence, 6 * logits) + teacherCopy;
        }
        long chunkRows = Math.Max(1, options.LossChunkElements / classes);
        long chunk = chunkRows * classes * 4;
        return Math.Max(logits + 10 * chunk, 4 * logits);
    }

    /// <summary>A one-line table row in megabytes.</summary>
    public override string ToString() =>
        $"teacher {Mb(TeacherWeights)}, student {Mb(StudentWeights)}, gradients {Mb(Gradients)}, optimizer {Mb(OptimizerState)}, teacher forward {Mb(TeacherForward)}, " +
        $"activations {Mb(Activations)}, logits {Mb(Logits)}, student forward {Mb(StudentForward)}, loss {Mb(Loss)}, recomputation {Mb(Recomputation)}; peak {Mb(Total)}";

    private static long ElementBytes(ScalarType dtype)
    {
        using Tensor probe = empty(0, dtype);
        return probe.element_size();
    }

    private static string Mb(long bytes) => $"{bytes / (double)(1 << 20):F1} MB";

    /// <summary>LoRA's share of a block, in floats per token: A·x kept (r per adapter), and the base output, B·A·x and its scaled copy made (3 × out).</summary>
    private readonly record struct LoraShape(long KeptPerBlock, long MadePerBlock)
    {
        public static LoraShape Of(nn.Module student, int layers)
        {
            // Read from the adapters' registered weights (A [r, in], B [out, r]), as a checkpoint sees them.
            long rank = 0, outputs = 0;
            foreach ((string name, Tensor p) in student.named_parameters())
            {
                if (name.EndsWith(".lora_A.weight", StringComparison.Ordinal)) rank += p.shape[0];
                else if (name.EndsWith(".lora_B.weight", StringComparison.Ordinal)) outputs += p.shape[0];
            }
            return new LoraShape(rank / layers, 3 * outputs / layers);
        }
    }
}
