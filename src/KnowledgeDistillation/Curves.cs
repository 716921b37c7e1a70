namespace KnowledgeDistillation;

/// <summary>Curve shapes shared by the learning-rate schedule and the objective's weight and temperature schedules.</summary>
internal static class Curves
{
    /// <summary>Half a cosine from 0 (progress 0) to 1 (progress 1): (1 − cos πp) / 2.</summary>
    public static double CosineRamp(double progress) => (1 - Math.Cos(Math.PI * progress)) / 2;
}
