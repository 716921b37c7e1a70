using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// MiniLM's self-attention relation distillation (Wang et al., "MiniLM", NeurIPS 2020; "MiniLMv2", ACL Findings 2021)
/// for one kind of vector — queries, keys or values. Each model's vectors <c>[B, S, D]</c> (every head side by side)
/// are re-split into R relation heads of width d_r = D / R, so teacher and student may have different head counts and
/// widths as long as both widths divide by R; per relation head, the relation of token i to token j is
/// softmax_j(x_i · x_j / √d_r). The loss is KL(teacher relation ‖ student relation), averaged over relation heads and
/// over the query tokens the mask keeps; padded tokens are also left out as keys. MiniLMv2 sums this over the Q-Q,
/// K-K and V-V relations of one teacher layer and one student layer.
/// </summary>
/// <remarks>
/// The teacher side is detached; math in float32 for half-precision inputs. Rows are sequences: the batch and
/// sequence dimensions of both inputs must match. A row with no kept token contributes nothing; with none kept the
/// loss is 0 with zero gradient.
/// </remarks>
public sealed class MiniLMRelationLoss : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Creates the loss.</summary>
    /// <param name="relationHeads">R, the relation heads both models' vectors are split into (MiniLMv2 uses 48 for large teachers, 12 to 64 in its ablations).</param>
    public MiniLMRelationLoss(int relationHeads) : base(nameof(MiniLMRelationLoss))
    {
        RelationHeads = relationHeads >= 1 ? relationHeads : throw new ArgumentOutOfRangeException(nameof(relationHeads), relationHeads, $"relationHeads must be at least 1; got {relationHeads}.");
    }

    /// <summary>R.</summary>
    public int RelationHeads { get; }

    /// <summary>The loss over every token.</summary>
    public override Tensor forward(Tensor studentVectors, Tensor teacherVectors) => forward(studentVectors, teacherVectors, null);

    /// <summary>The loss over the tokens the padding mask keeps.</summary>
    /// <param name="studentVectors">The student's queries, keys or values, <c>[B, S, Ds]</c>, Ds divisible by R.</param>
    /// <param name="teacherVectors">The teacher's, <c>[B, S, Dt]</c>, Dt divisible by R (detached inside).</param>
    /// <param name="paddingMask">Optional <c>[B, S]</c>, true/1 for real tokens.</param>
    public Tensor forward(Tensor studentVectors, Tensor teacherVectors, Tensor? paddingMask)
    {
        ArgumentNullException.ThrowIfNull(studentVectors);
        ArgumentNullException.ThrowIfNull(teacherVectors);
        const string layout = "queries, keys or values of shape [B, S, D] (every head side by side)";
        LossInputs.RequireFloating(studentVectors, nameof(studentVectors));
        LossInputs.RequireFloating(teacherVectors, nameof(teacherVectors));
        LossInputs.RequireRank(studentVectors, nameof(studentVectors), 3, 3, layout);
        LossInputs.RequireRank(teacherVectors, nameof(teacherVectors), 3, 3, layout);
        LossInputs.RequireSameLeadingShape(studentVectors, nameof(studentVectors), teacherVectors, nameof(teacherVectors));
        LossInputs.RequireSameDevice(studentVectors, nameof(studentVectors), teacherVectors, nameof(teacherVectors));
        RequireDivisible(studentVectors, nameof(studentVectors));
        RequireDivisible(teacherVectors, nameof(teacherVectors));

        using var scope = NewDisposeScope();
        ScalarType type = LossInputs.ComputeType(studentVectors);
        Tensor? keep = RowMask.Resolve(studentVectors.shape[..^1], studentVectors.device, paddingMask, null, Labels.IgnoreIndex, nameof(paddingMask));
        Tensor studentLog = LogRelations(RowMask.ZeroDropped(studentVectors.to(type), keep, 1), keep);
        Tensor teacherLog = LogRelations(RowMask.ZeroDropped(teacherVectors.detach().to(type), keep, 1), keep);
        Tensor perQuery = (teacherLog.exp() * (teacherLog - studentLog)).sum(-1).mean([1]); // [B, S]: KL per query, averaged over relation heads
        return RowMask.Mean(perQuery, keep).MoveToOuterDisposeScope();
    }

    /// <summary>log softmax_j(x_i · x_j / √d_r) per relation head: <c>[B, R, S, S]</c>; padded keys get probability 0 (their log clamped to the lowest finite value).</summary>
    private Tensor LogRelations(Tensor vectors, Tensor? keep)
    {
        long batch = vectors.shape[0], length = vectors.shape[1], width = vectors.shape[2] / RelationHeads;
        Tensor heads = vectors.reshape(batch, length, RelationHeads, width).transpose(1, 2); // [B, R, S, d_r]
        Tensor scores = heads.matmul(heads.transpose(-2, -1)) / Math.Sqrt(width);
        if (keep is not null) scores = scores.masked_fill(keep.logical_not().unsqueeze(1).unsqueeze(2), double.NegativeInfinity);
        return scores.log_softmax(-1).clamp_min(finfo(scores.dtype).min);
    }

    private void RequireDivisible(Tensor vectors, string name)
    {
        if (vectors.shape[2] % RelationHeads != 0)
        {
            throw new ArgumentException($"{name}'s width {vectors.shape[2]} must divide into {RelationHeads} relation heads; choose a relation head count that divides both models' widths.", name);
        }
    }
}
