namespace KnowledgeDistillation.Training;

/// <summary>Linear warm-up to the peak, then constant, linear or cosine decay to 0 at the last step.</summary>
public static class LearningRateSchedule
{
    /// <summary>The learning rate for optimizer step <paramref name="step"/> (0-based) of <paramref name="totalSteps"/>.</summary>
    public static double At(long step, long totalSteps, double peak, int warmupSteps, LearningRateDecay decay)
    {
        if (warmupSteps > 0 && step < warmupSteps) return peak * (step + 1) / warmupSteps;
        long decaySteps = Math.Max(1, totalSteps - warmupSteps);
        double progress = Math.Clamp((step - warmupSteps) / (double)decaySteps, 0, 1);
        return decay switch
        {
            LearningRateDecay.Linear => peak * (1 - progress),
            LearningRateDecay.Cosine => peak * Curves.CosineDecay(progress),
            _ => peak,
        };
    }
}
