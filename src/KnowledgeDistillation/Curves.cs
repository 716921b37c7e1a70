namespace KnowledgeDistillation;

/// <summary>Curve shapes shared by the learning-rate schedule and the objective's weight and temperature schedules.</summary>
internal static class Curves
{
    /// <summary>Half a cosine falling from 1 (progress 0) to 0 (progress 1): (1 + cos πp) / 2.</summary>
    public static double CosineDecay(double progress) => (1 + Math.Cos(Math.PI * progress)) / 2;
}
