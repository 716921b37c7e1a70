using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Relational knowledge distillation (RKD; Park et al., "Relational Knowledge Distillation", CVPR 2019): the student
/// keeps the teacher's distances between examples and angles between triples of examples.
/// <list type="bullet">
/// <item>Distance: ψ_D(i, j) = ‖f_i − f_j‖ / μ, with μ the mean distance over the pairs i ≠ j; the loss is the mean of
/// smooth-L1(ψ_D^s − ψ_D^t) over all N² pairs (the diagonal contributes 0 but counts, as in RepDistiller).</item>
/// <item>Angle: ψ_A(i, j, k) = cos∠(f_j − f_i, f_k − f_i), the angle at vertex i; the loss is the mean of
/// smooth-L1(ψ_A^s − ψ_A^t) over all N³ triples (a degenerate triple, j = i or k = i, has both cosines 0).</item>
/// <item>loss = w_D · distance + w_A · angle, with the paper's and RepDistiller's weights w_D = 25, w_A = 50.</item>
/// </list>
/// </summary>
/// <remarks>
/// Distances are √max(‖f_i‖² + ‖f_j‖² − 2 f_i·f_j, 10⁻¹²), as in RepDistiller; the unit vectors of the angle term divide
/// by max(‖v‖, 10⁻¹²) (PyTorch's <c>F.normalize</c>). With a mask, pairs and triples are those of the kept examples
/// and the means divide by K² and K³ for K kept. The angle term holds an <c>[N, N, N]</c> tensor: mind N on large
/// batches. See <see cref="RelationalLoss"/> for shapes and masking.
/// </remarks>
public sealed class RelationalKDLoss : RelationalLoss
{
    private const double Epsilon = 1e-12;

    /// <summary>Creates the loss.</summary>
    /// <param name="distanceWeight">w_D; finite and ≥ 0 (0 turns the distance term off).</param>
    /// <param name="angleWeight">w_A; finite and ≥ 0 (0 turns the angle term off).</param>
    public RelationalKDLoss(double distanceWeight = 25, double angleWeight = 50) : base(nameof(RelationalKDLoss))
    {
        DistanceWeight = LossInputs.RequireNonNegativeWeight(distanceWeight, nameof(distanceWeight));
        AngleWeight = LossInputs.RequireNonNegativeWeight(angleWeight, nameof(angleWeight));
    }

    /// <summary>w_D.</summary>
    public double DistanceWeight { get; }

    /// <summary>w_A.</summary>
    public double AngleWeight { get; }

    /// <inheritdoc />
    protected override Tensor Relation(Tensor student, Tensor teacher, Tensor weight)
    {
        Tensor pairs = weight.unsqueeze(1) * weight.unsqueeze(0); // [N, N]: both kept
        Tensor kept = weight.sum();
        Tensor loss = zeros(1, student.dtype, student.device).squeeze();
        if (DistanceWeight > 0)
        {
            Tensor difference = NormalizedDistances(student, pairs) - NormalizedDistances(teacher, pairs);
            loss = loss + DistanceWeight * (SmoothL1(difference) * pairs).sum() / kept.square().clamp_min(1);
        }
        if (AngleWeight > 0)
        {
            Tensor triples = pairs.unsqueeze(2) * weight; // [N, N, N]
            Tensor difference = Angles(student) - Angles(teacher);
            loss = loss + AngleWeight * (SmoothL1(difference) * triples).sum() / kept.pow(3).clamp_min(1);
        }
        return loss;
    }

    /// <summary>‖f_i − f_j‖ divided by its mean over the kept pairs i ≠ j; 0 on the diagonal.</summary>
    private static Tensor NormalizedDistances(Tensor f, Tensor pairs)
    {
        Tensor square = f.square().sum(1);
        Tensor distances = (square.unsqueeze(1) + square.unsqueeze(0) - 2 * f.matmul(f.t())).clamp_min(Epsilon).sqrt();
        Tensor offDiagonal = pairs * (1 - eye(f.shape[0], dtype: f.dtype, device: f.device));
        distances = distances * offDiagonal;
        Tensor mean = distances.sum() / offDiagonal.sum().clamp_min(1);
        return distances / mean.clamp_min(Epsilon);
    }

    /// <summary>cos∠(f_j − f_i, f_k − f_i) for every vertex i: <c>[N, N, N]</c>.</summary>
    private static Tensor Angles(Tensor f)
    {
        Tensor from = f.unsqueeze(0) - f.unsqueeze(1); // [i, j] = f_j − f_i
        // max(‖v‖, ε) taken before the square root, so that the zero vectors of degenerate triples have a zero (not NaN) gradient.
        Tensor unit = from / from.square().sum(2, keepdim: true).clamp_min(Epsilon * Epsilon).sqrt();
        return unit.bmm(unit.transpose(1, 2));
    }
}
