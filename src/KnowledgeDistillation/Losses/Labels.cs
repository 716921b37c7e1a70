namespace KnowledgeDistillation.Losses;

/// <summary>Conventions for label tensors shared by every loss, the objective and the trainer.</summary>
public static class Labels
{
    /// <summary>The label that marks a row or token to leave out (PyTorch's and Hugging Face's -100).</summary>
    public const long IgnoreIndex = -100;
}
