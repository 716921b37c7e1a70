using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Benchmarks;

/// <summary>The models and batches every measurement shares: the TinyGpt sample's teacher and half-depth student.</summary>
internal static class Workloads
{
    public const int Context = 64, Batch = 32, Vocabulary = 256;
    public const double Temperature = 2.0, LearningRate = 2e-3;

    /// <summary>The TinyGpt sample's teacher: 4 layers, width 128, 834k parameters.</summary>
    public static GptConfig Teacher => new()
    {
        VocabSize = Vocabulary, ContextLength = Context, Width = 128, Heads = 4, Layers = 4, FeedForwardWidth = 512, Dropout = 0.0,
    };

    /// <summary>Its half-depth student.</summary>
    public static GptConfig Student => Teacher with { Layers = 2 };

    /// <summary>Soft targets at T = 2 plus hard labels, half and half: the distillation step every timing runs.</summary>
    public static DistillationObjective Objective() => DistillationObjective.Create().SoftTargets(0.5, temperature: Temperature).HardTargets(0.5).Build();

    public static DistillationTrainerOptions Options(long steps) => new()
    {
        MaxSteps = steps, LearningRate = LearningRate, WarmupSteps = 0, Decay = LearningRateDecay.Constant, WeightDecay = 0.01, MaxGradientNorm = 1.0,
        Device = "cpu", Seed = 1, LoggingInterval = int.MaxValue,
    };

    /// <summary>Random token batches (timing does not depend on the tokens), detached from any dispose scope.</summary>
    public static List<DistillationBatch<TokenBatch>> RandomBatches(int count, int batch = Batch, int seed = 5)
    {
        manual_seed(seed);
        return Enumerable.Range(0, count).Select(_ => RandomBatch(batch)).ToList();
    }

    /// <summary>One batch of random windows and their next tokens, detached from any dispose scope.</summary>
    public static DistillationBatch<TokenBatch> RandomBatch(int batch)
    {
        using var scope = NewDisposeScope();
        Tensor tokens = randint(0, Vocabulary, [batch, Context + 1]);
        Tensor inputs = tokens[.., ..Context].contiguous().DetachFromDisposeScope(), labels = tokens[.., 1..].contiguous().DetachFromDisposeScope();
        return new DistillationBatch<TokenBatch>(new TokenBatch(inputs), labels);
    }

    /// <summary>The objective as a user writes it without the library: 0.5 · T²·KL at T = 2 (kl_div over rows) + 0.5 · cross-entropy.</summary>
    public static Tensor HandWrittenLoss(Tensor studentLogits, Tensor teacherLogits, Tensor labels)
    {
        const double t = Temperature;
        Tensor student = studentLogits.reshape(-1, Vocabulary), teacher = teacherLogits.reshape(-1, Vocabulary);
        Tensor soft = F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target: true, reduction: nn.Reduction.Sum) / student.shape[0] * (t * t);
        return 0.5 * soft + 0.5 * F.cross_entropy(student, labels.reshape(-1));
    }

    /// <summary>One distillation step as a user writes it without the library: the teacher's logits, the loss above, clipping at 1.0, the update.</summary>
    public static void HandWrittenStep(GptModel teacher, GptModel student, OptimizerHelper optimizer, DistillationBatch<TokenBatch> batch)
    {
        using var scope = NewDisposeScope();
        optimizer.zero_grad();
        Tensor teacherLogits;
        using (no_grad()) teacherLogits = teacher.call(batch.Inputs.InputIds);
        HandWrittenLoss(student.call(batch.Inputs.InputIds), teacherLogits, batch.Labels!).backward();
        nn.utils.clip_grad_norm_(student.parameters(), 1.0);
        optimizer.step();
    }

    /// <summary>Multiply-adds ×2 of one forward pass per token: the matrix products of every layer, attention over the whole context, and the head.</summary>
    public static double ForwardFlopsPerToken(GptConfig c)
    {
        double perLayer = 2.0 * (4 * c.Width * c.Width + 2 * c.Width * c.FeedForwardWidth) // q, k, v, output projections and the feed-forward pair
            + 2.0 * 2 * Context * c.Width; // scores (Q·Kᵀ) and the weighted sum of values, full S×S as SDPA computes it
        return c.Layers * perLayer + 2.0 * c.Width * c.VocabSize;
    }
}
