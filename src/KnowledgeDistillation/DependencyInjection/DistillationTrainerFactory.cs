using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KnowledgeDistillation.DependencyInjection;

/// <summary>Creates trainers with the registered, validated options and the registered logging.</summary>
public interface IDistillationTrainerFactory
{
    /// <summary>The options every created trainer uses (validated on first access).</summary>
    DistillationTrainerOptions Options { get; }

    /// <summary>A trainer for one teacher.</summary>
    DistillationTrainer<TInput> Create<TInput>(IDistillationModel<TInput> teacher, IModuleModel<TInput> student, DistillationObjective objective);

    /// <summary>A trainer for several teachers.</summary>
    DistillationTrainer<TInput> Create<TInput>(IReadOnlyList<IDistillationModel<TInput>> teachers, IModuleModel<TInput> student, DistillationObjective objective);
}

internal sealed class DistillationTrainerFactory(IOptions<DistillationTrainerOptions> options, ILoggerFactory? loggerFactory = null) : IDistillationTrainerFactory
{
    public DistillationTrainerOptions Options => options.Value;

    public DistillationTrainer<TInput> Create<TInput>(IDistillationModel<TInput> teacher, IModuleModel<TInput> student, DistillationObjective objective) =>
        Create([teacher], student, objective);

    public DistillationTrainer<TInput> Create<TInput>(IReadOnlyList<IDistillationModel<TInput>> teachers, IModuleModel<TInput> student, DistillationObjective objective) =>
        new(teachers, student, objective, options.Value, loggerFactory?.CreateLogger<DistillationTrainer<TInput>>());
}
