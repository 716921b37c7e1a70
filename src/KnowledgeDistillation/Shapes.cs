namespace KnowledgeDistillation;

/// <summary>Formatting shared by every error message that names a tensor shape.</summary>
internal static class Shapes
{
    /// <summary>A shape as <c>[2, 3, 5]</c>.</summary>
    public static string Describe(long[] shape) => "[" + string.Join(", ", shape) + "]";
}
