using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

/// <summary>Combines several teachers' logits into the logits of their averaged softened distribution.</summary>
internal static class TeacherEnsemble
{
    /// <summary>
    /// Logits z such that softmax(z / T) = Σ_k w_k softmax(z_k / T): z = T · logsumexp_k(log w_k + log_softmax(z_k / T)).
    /// With one teacher, its logits unchanged.
    /// </summary>
    public static Tensor AverageSoftened(IReadOnlyList<Tensor> teacherLogits, IReadOnlyList<double> weights, double temperature)
    {
        if (teacherLogits.Count == 1) return teacherLogits[0];
        double total = weights.Sum();
        Tensor[] parts = teacherLogits
            .Select((z, k) => z.detach().to(ScalarType.Float32).div(temperature).log_softmax(-1) + Math.Log(weights[k] / total))
            .ToArray();
        return stack(parts).logsumexp(0) * temperature;
    }
}
