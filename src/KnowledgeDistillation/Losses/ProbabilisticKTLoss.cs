using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Probabilistic knowledge transfer (PKT; Passalis and Tefas, "Learning Deep Representations with Probabilistic
/// Knowledge Transfer", ECCV 2018): each model's cosine similarities between examples, shifted to [0, 1] and
/// normalised per row into conditional probabilities p(j | i), are matched by KL divergence.
/// <list type="bullet">
/// <item>x̂_i = x_i / (‖x_i‖ + ε); K_ij = (x̂_i · x̂_j + 1) / 2; p(j | i) = K_ij / Σ_j K_ij;</item>
/// <item>loss = mean over all N² pairs of p_t(j | i) · log((p_t(j | i) + ε) / (p_s(j | i) + ε)), with ε = 10⁻⁷,</item>
/// </list>
/// as in the authors' code (via RepDistiller), including its mean over N² entries (not a sum over j per row).
/// </summary>
/// <remarks>
/// With a mask, the similarities, their row normalisation and the mean run over the K kept examples only (K²
/// entries). See <see cref="RelationalLoss"/> for shapes and masking.
/// </remarks>
public sealed class ProbabilisticKTLoss : RelationalLoss
{
    private const double Epsilon = 1e-7;

    /// <summary>Creates the loss.</summary>
    public ProbabilisticKTLoss() : base(nameof(ProbabilisticKTLoss))
    {
    }

    /// <inheritdoc />
    protected override Tensor Relation(Tensor student, Tensor teacher, Tensor weight)
    {
        Tensor pairs = weight.unsqueeze(1) * weight.unsqueeze(0);
        Tensor p = Conditional(student, pairs), q = Conditional(teacher, pairs);
        Tensor entries = q * ((q + Epsilon) / (p + Epsilon)).log() * pairs;
        return entries.sum() / weight.sum().square().clamp_min(1);
    }

    private static Tensor Conditional(Tensor f, Tensor pairs)
    {
        // The tiny floor under the squared norm changes no value but keeps a zero vector's gradient finite.
        Tensor unit = f / (f.square().sum(1, keepdim: true).clamp_min(1e-30).sqrt() + Epsilon);
        Tensor similarity = (unit.matmul(unit.t()) + 1) / 2 * pairs;
        return similarity / similarity.sum(1, keepdim: true).clamp_min(Epsilon);
    }
}
