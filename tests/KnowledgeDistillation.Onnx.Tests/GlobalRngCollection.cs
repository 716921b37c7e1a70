namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>Tests whose outcome depends on torch's process-wide random generator (dropout, initialisation) run alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalRngCollection
{
    public const string Name = "Process-wide RNG";
}
