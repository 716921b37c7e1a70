using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024): each row's
/// logits are centred and divided by their standard deviation before the temperature, z̃ = (z − mean(z)) / (std(z) + ε),
/// so that the student matches the shape of the teacher's logits rather than their scale, and teacher and student
/// may keep logit ranges of their own. std is the unbiased (n − 1) deviation over the classes and ε = 1e-7, as in the
/// authors' code. Rows must be finite: a −inf logit (a masked vocabulary entry) has no mean. A single class has no
/// deviation: its standardised logit is 0 (its probability is 1 whatever the logit, so nothing is lost).
/// </summary>
public static class LogitStandardization
{
    /// <summary>ε added to the deviation.</summary>
    public const double Epsilon = 1e-7;

    /// <summary>(z − mean(z)) / (std(z) + ε) over the last dimension.</summary>
    public static Tensor Apply(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        Tensor mean = logits.mean([-1], keepdim: true);
        if (logits.shape[^1] == 1) return logits - mean; // exactly 0, with a zero gradient; std over one class would be NaN
        Tensor deviation = logits.std(-1, unbiased: true, keepdim: true);
        return (logits - mean) / (deviation + Epsilon);
    }
}
