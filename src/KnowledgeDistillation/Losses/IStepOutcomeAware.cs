namespace KnowledgeDistillation.Losses;

/// <summary>
/// A loss that changes state of its own in its forward pass (CRD's memory banks) and must not keep a change made on a
/// step whose update is then skipped. The trainer defers such changes until it knows whether the optimizer step was
/// taken; a hand-written loop that never calls these sees the change at once.
/// </summary>
internal interface IStepOutcomeAware
{
    /// <summary>From now on, hold state changes until <see cref="StepOutcome"/>.</summary>
    void DeferUntilStepOutcome();

    /// <summary>Applies (<paramref name="applied"/>) or discards the changes held since the last call.</summary>
    void StepOutcome(bool applied);
}
