namespace KnowledgeDistillation.Tests;

/// <summary>
/// Tests that compare two training runs bit for bit depend on torch's CPU generator, which is process-wide: a test
/// running beside them that draws a random number would change their dropout masks or initialisations. They run alone.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalRngCollection
{
    public const string Name = "Process-wide RNG";
}
