using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Argument checks shared by the loss modules. Each failure names the argument and states the expected and the
/// actual shape, dtype or value, so the first thing a user sees is never a native libtorch message.
/// All checks read only metadata (shape, dtype, device): none copies data to the host.
/// </summary>
internal static class LossInputs
{

    public static void RequireFloating(Tensor tensor, string name)
    {
        if (!is_floating_point(tensor.dtype) || tensor.is_complex())
        {
            throw new ArgumentException(
                $"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64); got {tensor.dtype} with shape {Shapes.Describe(tensor.shape)}.",
                name);
        }
    }

    public static void RequireRank(Tensor tensor, string name, int minRank, int maxRank, string layout)
    {
        long rank = tensor.dim();
        if (rank < minRank || rank > maxRank)
        {
            throw new ArgumentException($"{name} must be {layout}; got rank {rank} with shape {Shapes.Describe(tensor.shape)}.", name);
        }
    }

    public static void RequireSameDevice(Tensor student, string studentName, Tensor teacher, string teacherName)
    {
        if (student.device_type != teacher.device_type || student.device_index != teacher.device_index)
        {
            throw new ArgumentException(
                $"{studentName} is on {student.device} but {teacherName} is on {teacher.device}; move both to one device.", teacherName);
        }
    }

    /// <summary>Same shape except possibly the last dimension (widths may differ when a projection is used).</summary>
    public static void RequireSameLeadingShape(Tensor student, string studentName, Tensor teacher, string teacherName)
    {
        long[] s = student.shape, t = teacher.shape;
        if (s.Length != t.Length || !s[..^1].SequenceEqual(t[..^1]))
        {
            throw new ArgumentException(
                $"{studentName} has shape {Shapes.Describe(s)} and {teacherName} has shape {Shapes.Describe(t)}; expected the same shape in every dimension but the last.",
                teacherName);
        }
    }

    public static void RequireSameShape(Tensor student, string studentName, Tensor teacher, string teacherName, string lastDimension)
    {
        long[] s = student.shape, t = teacher.shape;
        if (s.SequenceEqual(t)) return;
        string detail = s.Length == t.Length && s[..^1].SequenceEqual(t[..^1])
            ? $" ({lastDimension} differs: {s[^1]} vs {t[^1]})"
            : "";
        throw new ArgumentException(
            $"{studentName} has shape {Shapes.Describe(s)} but {teacherName} has shape {Shapes.Describe(t)}; expected the same shape{detail}.", teacherName);
    }

    public static double RequireLabelSmoothing(double labelSmoothing, string name)
    {
        if (!(labelSmoothing >= 0 && labelSmoothing <= 1))
        {
            throw new ArgumentOutOfRangeException(name, labelSmoothing, $"{name} must lie in [0, 1]; got {labelSmoothing}.");
        }
        return labelSmoothing;
    }

    /// <summary>The dtype loss math runs in: float64 stays float64, everything else (bf16, fp16, fp32) becomes float32.</summary>
    public static ScalarType ComputeType(Tensor tensor) => tensor.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>Throws when a kept row's label is outside [0, <paramref name="classes"/>); reads one value back to the host, so callers do it for CPU labels only.</summary>
    public static void RequireLabelsInRange(Tensor labels, Tensor keep, long classes, long ignoreIndex)
    {
        Tensor bad = keep.logical_and(labels.lt(0).logical_or(labels.ge(classes)));
        if (bad.any().item<bool>())
        {
            long value = labels.masked_select(bad)[0].to(ScalarType.Int64).item<long>();
            throw new ArgumentException(
                $"labels must be class indices in [0, {classes}) or the ignore index {ignoreIndex}; found {value}.", "labels");
        }
    }

    /// <summary>A loss weight (α, β, γ, w_D, …): finite and ≥ 0, else an exception naming it and the value.</summary>
    public static double RequireNonNegativeWeight(double value, string name) =>
        double.IsFinite(value) && value >= 0 ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be finite and non-negative; got {value}.");
}
