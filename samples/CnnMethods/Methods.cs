using KnowledgeDistillation.Objectives;

namespace CnnMethods;

/// <summary>How a method's teacher runs: not at all, from the cached logits, or live (features need the running teacher).</summary>
internal enum TeacherUse { None, CachedLogits, Live }

/// <summary>
/// One method of the benchmark (<c>Key</c> selects it on the command line): the teacher it needs and its objective, made from the run's optimizer steps (DKD's
/// warm-up is their first tenth, as mdistiller's 20 of 240 epochs) and the training set's size (CRD's memory bank).
/// </summary>
internal sealed record Method(string Key, string Name, TeacherUse Teacher, Func<long, long, DistillationObjective> Objective);

/// <summary>
/// The methods, each with its authors' (or RepDistiller's and mdistiller's) published weights and temperatures, not
/// tuned here: KD is Hinton et al.'s 0.9 · T²KL at T = 4 + 0.1 · CE; every other method keeps CE at weight 1 (the
/// feature methods on top of KD, as the issue asks for FitNets and AT).
/// </summary>
internal static class Methods
{
    /// <summary>Negatives per example for CRD: RepDistiller's 16,384 would gather a 1 GB bank slice per step on a CPU.</summary>
    public const int CrdNegatives = 1024;

    private static DistillationObjectiveBuilder Kd() => DistillationObjective.Create().SoftTargets(0.9, temperature: 4.0).HardTargets(0.1);

    /// <summary>The benchmark's methods, in table order.</summary>
    public static IReadOnlyList<Method> All { get; } =
    [
        new("ce", "CE alone", TeacherUse.None, (_, _) => DistillationObjective.Create().HardTargets(1.0).Build()),
        new("kd", "KD (T = 4)", TeacherUse.CachedLogits, (_, _) => Kd().Build()),
        new("dkd", "DKD (α 1, β 8, T = 4)", TeacherUse.CachedLogits, (steps, _) => DistillationObjective.Create().HardTargets(1.0)
            .DecoupledKD(Schedule.Linear(0.0, 1.0, Math.Max(1, steps / 10)), alpha: 1.0, beta: 8.0, temperature: 4.0).Build()),
        new("dist", "DIST (β = γ = 1, T = 1)", TeacherUse.CachedLogits, (_, _) => DistillationObjective.Create().HardTargets(1.0).Dist(1.0).Build()),
        new("kd-ls", "KD + logit standardisation", TeacherUse.CachedLogits, (_, _) => DistillationObjective.Create()
            .SoftTargets(0.9, temperature: 4.0, standardizeLogits: true).HardTargets(0.1).Build()),
        new("kd-fitnets", "KD + FitNets (β = 100)", TeacherUse.Live, (_, _) => Kd()
            .FitNetsHint(100.0, (1, 1), Networks.StudentChannels, Networks.TeacherChannels).Build()),
        new("kd-at", "KD + AT (β = 1000)", TeacherUse.Live, (_, _) => Kd().AttentionTransfer(1000.0, [(0, 0), (1, 1)]).Build()),
        new("crd", "CRD (0.8)", TeacherUse.Live, (_, examples) => DistillationObjective.Create().HardTargets(1.0)
            .ContrastiveRepresentation(0.8, (2, 2), Networks.StudentEmbedding, Networks.TeacherEmbedding, examples, negatives: (int)Math.Min(CrdNegatives, examples - 1)).Build()),
        new("rkd", "RKD (25 / 50)", TeacherUse.Live, (_, _) => DistillationObjective.Create().HardTargets(1.0).RelationalKD(1.0, (2, 2)).Build()),
    ];

    /// <summary>The methods named by <paramref name="keys"/> (all when empty), in table order; CE alone always comes first, as the baseline.</summary>
    /// <exception cref="ArgumentException">A key names no method.</exception>
    public static IReadOnlyList<Method> Select(IReadOnlyCollection<string> keys)
    {
        string[] unknown = [.. keys.Where(k => All.All(m => m.Key != k))];
        if (unknown.Length > 0)
        {
            throw new ArgumentException($"--methods: unknown method(s) {string.Join(", ", unknown)}; expected some of {string.Join(", ", All.Select(m => m.Key))}.", nameof(keys));
        }
        return keys.Count == 0 ? All : [.. All.Where((m, i) => i == 0 || keys.Contains(m.Key))];
    }
}
