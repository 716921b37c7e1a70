using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Base of the losses between CNN feature maps <c>[N, C, H, W]</c> of a student and a teacher (attention transfer,
/// FitNets hints), averaged over the examples an optional mask <c>[N]</c> keeps; with none kept the loss is 0 with
/// zero gradient. The teacher is detached and the math runs in float32 for half-precision inputs.
/// </summary>
public abstract class FeatureMapLoss : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Creates the loss.</summary>
    protected FeatureMapLoss(string name) : base(name)
    {
    }

    /// <summary>The loss over every example.</summary>
    /// <param name="studentMap">Student feature map, <c>[N, Cs, Hs, Ws]</c>.</param>
    /// <param name="teacherMap">Teacher feature map, <c>[N, Ct, Ht, Wt]</c> (detached inside).</param>
    public override Tensor forward(Tensor studentMap, Tensor teacherMap) => forward(studentMap, teacherMap, null);

    /// <summary>The loss over the examples the mask keeps.</summary>
    /// <param name="studentMap">Student feature map, <c>[N, Cs, Hs, Ws]</c>.</param>
    /// <param name="teacherMap">Teacher feature map, <c>[N, Ct, Ht, Wt]</c> (detached inside).</param>
    /// <param name="mask">Optional examples to keep: bool (or 0/1 integer) of shape <c>[N]</c>.</param>
    public Tensor forward(Tensor studentMap, Tensor teacherMap, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(studentMap);
        ArgumentNullException.ThrowIfNull(teacherMap);
        const string layout = "a feature map of shape [N, C, H, W]";
        LossInputs.RequireFloating(studentMap, nameof(studentMap));
        LossInputs.RequireFloating(teacherMap, nameof(teacherMap));
        LossInputs.RequireRank(studentMap, nameof(studentMap), 4, 4, layout);
        LossInputs.RequireRank(teacherMap, nameof(teacherMap), 4, 4, layout);
        if (studentMap.shape[0] != teacherMap.shape[0])
        {
            throw new ArgumentException(
                $"studentMap and teacherMap must hold the same examples; got {Shapes.Describe(studentMap.shape)} and {Shapes.Describe(teacherMap.shape)}.", nameof(teacherMap));
        }
        LossInputs.RequireSameDevice(studentMap, nameof(studentMap), teacherMap, nameof(teacherMap));
        foreach ((Tensor map, string name) in new[] { (studentMap, nameof(studentMap)), (teacherMap, nameof(teacherMap)) })
        {
            // A map with no channel or no position has no attention or hint to compare (a mean over nothing is NaN).
            if (map.shape[1] == 0 || map.shape[2] == 0 || map.shape[3] == 0)
            {
                throw new ArgumentException($"{name} must have at least one channel and one position; got {Shapes.Describe(map.shape)}.", name);
            }
        }

        using var scope = NewDisposeScope();
        ScalarType type = LossInputs.ComputeType(studentMap);
        Tensor? keep = RowMask.Resolve([studentMap.shape[0]], studentMap.device, mask, null, Labels.IgnoreIndex);
        Tensor perExample = PerExample(RowMask.ZeroDropped(studentMap.to(type), keep, 3), RowMask.ZeroDropped(teacherMap.detach().to(type), keep, 3));
        return RowMask.Mean(perExample, keep).MoveToOuterDisposeScope();
    }

    /// <summary>The loss of each example, <c>[N]</c>.</summary>
    protected abstract Tensor PerExample(Tensor student, Tensor teacher);
}
