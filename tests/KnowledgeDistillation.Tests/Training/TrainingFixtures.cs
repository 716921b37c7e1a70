using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>Small synthetic problems that train in seconds.</summary>
internal static class TrainingFixtures
{
    public const int Features = 10, Classes = 5;

    /// <summary>A fixed random MLP teacher; its argmax defines the labels.</summary>
    public static nn.Module<Tensor, Tensor> Teacher()
    {
        manual_seed(100);
        return nn.Sequential(nn.Linear(Features, 32), nn.Tanh(), nn.Linear(32, Classes));
    }

    public static nn.Module<Tensor, Tensor> Student(int seed = 200, double dropout = 0)
    {
        manual_seed(seed);
        return dropout > 0
            ? nn.Sequential(nn.Linear(Features, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, Classes))
            : nn.Sequential(nn.Linear(Features, 16), nn.ReLU(), nn.Linear(16, Classes));
    }

    /// <summary>
    /// Batches of inputs labelled by the teacher's argmax. The inputs and labels outlive the scope (they live for the
    /// test); the teacher's logits are disposed here, so no garbage is left for the finaliser to collect mid-test.
    /// </summary>
    public static List<DistillationBatch<Tensor>> Data(nn.Module<Tensor, Tensor> teacher, int batches, int batchSize, int seed)
    {
        manual_seed(seed);
        var result = new List<DistillationBatch<Tensor>>();
        using var noGrad = no_grad();
        for (int i = 0; i < batches; i++)
        {
            using var scope = NewDisposeScope();
            Tensor x = randn(batchSize, Features);
            Tensor y = teacher.call(x).argmax(-1);
            result.Add(new DistillationBatch<Tensor>(x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope()));
        }
        return result;
    }

    public static Dictionary<string, Tensor> Snapshot(nn.Module m) => m.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone().DetachFromDisposeScope());

    public static bool SameWeights(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b) =>
        a.Count == b.Count && a.All(p => p.Value.eq(b[p.Key]).all().item<bool>());

    public static DistillationTrainerOptions Options(long steps, Action<DistillationTrainerOptions>? change = null)
    {
        var options = new DistillationTrainerOptions { MaxSteps = steps, LearningRate = 1e-2, WarmupSteps = 0, Device = "cpu", LoggingInterval = 1000 };
        change?.Invoke(options);
        return options;
    }
}
