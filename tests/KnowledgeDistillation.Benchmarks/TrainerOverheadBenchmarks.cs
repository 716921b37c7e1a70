using BenchmarkDotNet.Attributes;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

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
    }

    /// <summary>What a user would write without the library.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Steps)]
    public void HandWritten()
    {
        _handStudent.train();
        foreach (DistillationBatch<TokenBatch> batch in _batches)
        {
            using var scope = NewDisposeScope();
            _handOptimizer.zero_grad();
            Tensor teacherLogits;
            using (no_grad()) teacherLogits = _teacher.call(batch.Inputs.InputIds);
            Tensor studentLogits = _handStudent.call(batch.Inputs.InputIds);
            const double t = Workloads.Temperature;
            Tensor rowsStudent = studentLogits.reshape(-1, Workloads.Vocabulary), rowsTeacher = teacherLogits.reshape(-1, Workloads.Vocabulary);
            Tensor soft = F.kl_div(F.log_softmax(rowsStudent / t, -1), F.log_softmax(rowsTeacher / t, -1), log_target: true, reduction: nn.Reduction.Sum) / rowsStudent.shape[0] * (t * t);
            Tensor hard = F.cross_entropy(rowsStudent, batch.Labels!.reshape(-1));
            (0.5 * soft + 0.5 * hard).backward();
            nn.utils.clip_grad_norm_(_handStudent.parameters(), 1.0);
            _handOptimizer.step();
        }
    }

    /// <summary>The same steps through the trainer (which also reads each term's value and the gradient norm back once per step).</summary>
    [Benchmark(OperationsPerInvoke = Steps)]
    public TrainingResult Trainer() => _trainer.Train(_batches);
}
