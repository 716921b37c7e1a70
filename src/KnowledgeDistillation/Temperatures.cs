namespace KnowledgeDistillation;

/// <summary>The one check of a softmax temperature, shared by the losses, top-k targets and the teacher cache.</summary>
internal static class Temperatures
{
    /// <summary>Returns <paramref name="temperature"/> when it is finite and positive.</summary>
    /// <exception cref="ArgumentOutOfRangeException">It is not; the message names <paramref name="name"/> and the value.</exception>
    public static double Require(double temperature, string name)
    {
        if (!double.IsFinite(temperature) || temperature <= 0)
        {
            throw new ArgumentOutOfRangeException(name, temperature, $"{name} must be a finite number greater than 0; got {temperature}.");
        }
        return temperature;
    }
}
