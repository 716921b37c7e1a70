using BenchmarkDotNet.Attributes;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks;

/// <summary>
/// One distillation step through <see cref="DistillationTrainer{TInput}"/> against the same step written by hand
/// with raw TorchSharp: same teacher, same student shape, same batches, same loss (0.5 soft KL at T = 2 + 0.5
/// cross-entropy), clipping at 1.0 and AdamW. Each invocation runs <see cref="Steps"/> steps.
/// </summary>
[Config(typeof(InProcessConfig))]
public class TrainerOverheadBenchmarks
{
    private const int Steps = 10;
    private GptModel _teacher = null!, _handStudent = null!;
    private OptimizerHelper _handOptimizer = null!;
    private DistillationTrainer<TokenBatch> _trainer = null!;
    private List<DistillationBatch<TokenBatch>> _batches = null!;
    private Tensor _lossStudent = null!, _lossTeacher = null!, _lossLabels = null!;
    private readonly KnowledgeDistillation.Losses.SoftTargetKLLoss _soft = new(Workloads.Temperature);
    private readonly KnowledgeDistillation.Losses.HardTargetCrossEntropyLoss _hard = new();

    [GlobalSetup]
    public void Setup()
    {
        manual_seed(1);
        _teacher = new GptModel(Workloads.Teacher);
        _teacher.eval();
        foreach (Parameter p in _teacher.parameters()) p.requires_grad_(false);
        manual_seed(2);
        _handStudent = new GptModel(Workloads.Student);
        manual_seed(2);
        var trainerStudent = new GptModel(Workloads.Student);
        _handOptimizer = optim.AdamW(_handStudent.parameters(), Workloads.LearningRate, weight_decay: 0.01);
        _trainer = new DistillationTrainer<TokenBatch>(_teacher, trainerStudent, Workloads.Objective(), Workloads.Options(Steps));
        _batches = Workloads.RandomBatches(Steps);
        _lossStudent = (randn(Workloads.Batch, Workloads.Context, Workloads.Vocabulary) * 2).requires_grad_().DetachFromDisposeScope();
        _lossTeacher = (randn(Workloads.Batch, Workloads.Context, Workloads.Vocabulary) * 2).DetachFromDisposeScope();
        _lossLabels = randint(0, Workloads.Vocabulary, [Workloads.Batch, Workloads.Context]).DetachFromDisposeScope();
    }

    /// <summary>What a user would write without the library.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Steps)]
    public void HandWritten()
    {
        _handStudent.train();
        foreach (DistillationBatch<TokenBatch> batch in _batches) Workloads.HandWrittenStep(_teacher, _handStudent, _handOptimizer, batch);
    }

    /// <summary>The loss alone, as the hand-written step computes it: forward and backward on one batch's logits.</summary>
    [Benchmark(OperationsPerInvoke = Steps)]
    public void HandWrittenLossOnly()
    {
        for (int i = 0; i < Steps; i++)
        {
            using var scope = NewDisposeScope();
            autograd.grad([Workloads.HandWrittenLoss(_lossStudent, _lossTeacher, _lossLabels)], [_lossStudent]);
        }
    }

    /// <summary>The same loss through the library's modules, with the labels' ignore-index masking the trainer applies.</summary>
    [Benchmark(OperationsPerInvoke = Steps)]
    public void LibraryLossOnly()
    {
        for (int i = 0; i < Steps; i++)
        {
            using var scope = NewDisposeScope();
            Tensor loss = 0.5 * _soft.forward(_lossStudent, _lossTeacher, null, _lossLabels) + 0.5 * _hard.forward(_lossStudent, _lossLabels);
            autograd.grad([loss], [_lossStudent]);
        }
    }

    /// <summary>The same steps through the trainer (which also reads each term's value and the gradient norm back once per step).</summary>
    [Benchmark(OperationsPerInvoke = Steps)]
    public TrainingResult Trainer() => _trainer.Train(_batches);
}
