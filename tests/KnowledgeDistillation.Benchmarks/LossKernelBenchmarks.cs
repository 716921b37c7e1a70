using BenchmarkDotNet.Attributes;
using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Benchmarks;

/// <summary>
/// Soft-target KL forward + backward on <c>[4, 128, V]</c> logits: the composition a user would write
/// (log_softmax / softmax / kl_div), <see cref="SoftTargetKLLoss"/> as shipped (chunked above 4M logits), and the
/// same loss with chunking turned off. Peak memory of the same three is measured by <c>measure loss-memory</c>.
/// </summary>
[Config(typeof(InProcessConfig))]
public class LossKernelBenchmarks
{
    private Tensor _student = null!, _teacher = null!;
    private readonly SoftTargetKLLoss _chunked = new(Workloads.Temperature), _direct = new(Workloads.Temperature) { MaxChunkElements = long.MaxValue };

    [Params(256, 32_768)]
    public int Vocabulary { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        manual_seed(3);
        _student = (randn(4, 128, Vocabulary) * 3).requires_grad_().DetachFromDisposeScope();
        _teacher = (randn(4, 128, Vocabulary) * 3).DetachFromDisposeScope();
    }

    /// <summary>Loss and gradient of the naive composition.</summary>
    public static Tensor Naive(Tensor student, Tensor teacher)
    {
        const double t = Workloads.Temperature;
        long v = student.shape[^1];
        Tensor rows = student.reshape(-1, v);
        return F.kl_div(F.log_softmax(rows / t, -1), F.softmax(teacher.reshape(-1, v) / t, -1), log_target: false, reduction: nn.Reduction.Sum) / rows.shape[0] * (t * t);
    }

    private static float GradientSum(Tensor loss, Tensor student)
    {
        using var scope = NewDisposeScope();
        return autograd.grad([loss], [student])[0].sum().item<float>();
    }

    [Benchmark(Baseline = true)]
    public float NaiveComposition()
    {
        using var scope = NewDisposeScope();
        return GradientSum(Naive(_student, _teacher), _student);
    }

    [Benchmark]
    public float SoftTargetKL()
    {
        using var scope = NewDisposeScope();
        return GradientSum(_chunked.forward(_student, _teacher), _student);
    }

    [Benchmark]
    public float SoftTargetKLUnchunked()
    {
        using var scope = NewDisposeScope();
        return GradientSum(_direct.forward(_student, _teacher), _student);
    }
}
