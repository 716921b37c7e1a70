using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace DistilMiniLM;

/// <summary>One model's scores: per task the probe's test metric (and balanced accuracy), and its agreement with the teacher on held-out texts.</summary>
internal sealed record Scores(IReadOnlyDictionary<string, LinearProbe.Result> Probes, double? Cosine, double? RecallAt10);

/// <summary>Scores a set of sentence embeddings of every text the tasks use.</summary>
internal static class Evaluation
{
    /// <summary>The rows every evaluation embeds: the tasks' label budgets, validation and test texts.</summary>
    public static int[] Rows(IReadOnlyList<LabelledTask> tasks) => [.. tasks.SelectMany(t => t.Train.Concat(t.Validation).Concat(t.Test)).Distinct().Order()];

    /// <summary>The held-out texts the teacher comparisons use: every task's test texts.</summary>
    public static int[] HeldOut(IReadOnlyList<LabelledTask> tasks) => [.. tasks.SelectMany(t => t.Test).Distinct().Order()];

    /// <summary>
    /// Probes <paramref name="features"/> (row i of the table → its embedding, via <paramref name="position"/>) on every
    /// task; with <paramref name="inTeacherSpace"/> and the teacher's embeddings, also the mean cosine to the teacher
    /// and the agreement of the 10 nearest neighbours (cosine) among the held-out texts.
    /// </summary>
    public static Scores Score(IReadOnlyList<LabelledTask> tasks, Tensor features, IReadOnlyDictionary<int, int> position, Tensor? inTeacherSpace = null, Tensor? teacher = null,
        bool standardize = true, IReadOnlyList<LabelledTask>? only = null)
    {
        using var scope = NewDisposeScope();
        Tensor Rows(int[] rows) => features.index_select(0, tensor(rows.Select(r => (long)position[r]).ToArray()));
        var probes = new Dictionary<string, LinearProbe.Result>();
        foreach (LabelledTask task in only ?? tasks) probes[task.Name] = LinearProbe.Evaluate(task, Rows(task.Train), Rows(task.Validation), Rows(task.Test), standardize);
        if (teacher is null) return new Scores(probes, null, null);
        int[] heldOut = HeldOut(tasks);
        Tensor index = tensor(heldOut.Select(r => (long)position[r]).ToArray());
        Tensor t = teacher.index_select(0, index);
        double? cosine = inTeacherSpace is null ? null : F.cosine_similarity(inTeacherSpace.index_select(0, index), t, dim: 1).mean().item<float>();
        return new Scores(probes, cosine, RecallAt10(Rows(heldOut), t));
    }

    /// <summary>The mean fraction of each text's 10 nearest neighbours (cosine, itself excluded) under the teacher that are also among the student's.</summary>
    public static double RecallAt10(Tensor student, Tensor teacher)
    {
        using var scope = NewDisposeScope();
        Tensor Neighbours(Tensor x)
        {
            Tensor n = F.normalize(x, p: 2, dim: 1);
            Tensor similarity = n.matmul(n.t()) - eye(x.shape[0]) * 1e9f;
            return similarity.topk(10, dim: 1).indexes;
        }
        long[] s = Neighbours(student).data<long>().ToArray(), t = Neighbours(teacher).data<long>().ToArray();
        long rows = student.shape[0];
        double shared = 0;
        for (long r = 0; r < rows; r++) shared += s.AsSpan((int)(r * 10), 10).ToArray().Intersect(t.AsSpan((int)(r * 10), 10).ToArray()).Count();
        return shared / (rows * 10);
    }
}
