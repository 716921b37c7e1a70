namespace KnowledgeDistillation.Objectives;

/// <summary>
/// A student feature and the teacher feature it learns from, as positions in <c>ModelOutput.HiddenStates</c> — for a
/// CNN, the order of the module names given to <c>DistillationModel.WithCapturedHiddenStates</c>. Positions may count
/// from the end (<c>^1</c> is the last). A tuple converts: <c>(0, 1)</c> or <c>(^1, ^1)</c>.
/// </summary>
/// <param name="Student">The student's feature.</param>
/// <param name="Teacher">The teacher's feature.</param>
public readonly record struct FeaturePair(Index Student, Index Teacher)
{
    /// <summary>A pair from a tuple of positions.</summary>
    public static implicit operator FeaturePair((Index Student, Index Teacher) pair) => new(pair.Student, pair.Teacher);

    /// <summary>A pair from a tuple of positions from the start.</summary>
    public static implicit operator FeaturePair((int Student, int Teacher) pair) => new(pair.Student, pair.Teacher);

    /// <inheritdoc />
    public override string ToString() => $"student {Student} ↔ teacher {Teacher}";
}
