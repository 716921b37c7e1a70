using System.Text;

namespace KnowledgeDistillation.Students;

/// <summary>Why a student tensor was not copied from the teacher.</summary>
public enum TransferSkipReason
{
    /// <summary>The teacher has no tensor of that name.</summary>
    Missing,

    /// <summary>The teacher's tensor has another shape (e.g. the student is narrower).</summary>
    ShapeMismatch,
}

/// <summary>One student tensor copied from the teacher.</summary>
/// <param name="Student">The student's tensor name.</param>
/// <param name="Teacher">The teacher tensor it was copied from.</param>
public sealed record CopiedTensor(string Student, string Teacher);

/// <summary>One student tensor left as initialised.</summary>
/// <param name="Student">The student's tensor name.</param>
/// <param name="Teacher">The teacher tensor it would have come from.</param>
/// <param name="Reason">Why it was not copied.</param>
/// <param name="Detail">The shapes, for <see cref="TransferSkipReason.ShapeMismatch"/>.</param>
public sealed record SkippedTensor(string Student, string Teacher, TransferSkipReason Reason, string Detail);

/// <summary>What <see cref="WeightTransfer"/> copied from teacher to student, and what it skipped and why.</summary>
/// <param name="TeacherLayers">The teacher layer that initialised each student layer.</param>
/// <param name="Copied">Tensors copied.</param>
/// <param name="Skipped">Tensors left as initialised.</param>
public sealed record TransferReport(IReadOnlyList<int> TeacherLayers, IReadOnlyList<CopiedTensor> Copied, IReadOnlyList<SkippedTensor> Skipped)
{
    /// <summary>A readable summary: the layer map, counts, and every skipped tensor with its reason.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        text.Append("student layer <- teacher layer: ")
            .AppendJoin(", ", TeacherLayers.Select((t, s) => $"{s} <- {t}"))
            .AppendLine()
            .AppendLine($"copied {Copied.Count} tensor(s), skipped {Skipped.Count}");
        foreach (SkippedTensor s in Skipped) text.AppendLine($"  skipped {s.Student}: {s.Reason} ({s.Detail})");
        return text.ToString();
    }
}
