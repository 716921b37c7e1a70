namespace KnowledgeDistillation.Models;

/// <summary>A teacher whose outputs are top-k targets computed at one fixed temperature (a teacher cache).</summary>
public interface ITopKTeacher
{
    /// <summary>The temperature its targets were computed at; soft-target terms reading it must use the same.</summary>
    double TopKTemperature { get; }
}
