namespace KnowledgeDistillation.Objectives;

/// <summary>Which self-attention relations a MiniLM term distils (MiniLMv2 uses all three).</summary>
[Flags]
public enum MiniLMRelations
{
    /// <summary>Query-query relations.</summary>
    QueryQuery = 1,

    /// <summary>Key-key relations.</summary>
    KeyKey = 2,

    /// <summary>Value-value relations (MiniLM v1's value relation).</summary>
    ValueValue = 4,

    /// <summary>Q-Q, K-K and V-V: MiniLMv2.</summary>
    All = QueryQuery | KeyKey | ValueValue,
}
