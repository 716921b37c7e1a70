using KnowledgeDistillation.Training;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace KnowledgeDistillation.DependencyInjection;

/// <summary>Registers KnowledgeDistillation with a service collection.</summary>
public static class KnowledgeDistillationServiceCollectionExtensions
{
    /// <summary>
    /// Binds <see cref="DistillationTrainerOptions"/> from a configuration section (e.g. the
    /// <c>"KnowledgeDistillation"</c> section of <c>appsettings.json</c>), validates them when first resolved, and
    /// registers <see cref="IDistillationTrainerFactory"/>. A key the options do not have (a misspelling such as
    /// <c>LearningRat</c>) is an <see cref="InvalidOperationException"/> naming it when the options are first resolved.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configurationSection">The section holding the options, e.g. <c>configuration.GetSection(DistillationTrainerOptions.SectionName)</c>.</param>
    /// <param name="configure">Optional changes applied after binding.</param>
    public static IServiceCollection AddKnowledgeDistillation(this IServiceCollection services, IConfiguration configurationSection, Action<DistillationTrainerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configurationSection);
        // A misspelled key (LearningRat) is an error naming it, not a setting silently left at its default.
        OptionsBuilder<DistillationTrainerOptions> options = services.AddOptions<DistillationTrainerOptions>()
            .Bind(configurationSection, binder => binder.ErrorOnUnknownConfiguration = true);
        if (configure is not null) options.Configure(configure);
        return AddCore(services);
    }

    /// <summary>Registers the trainer factory with options set in code.</summary>
    public static IServiceCollection AddKnowledgeDistillation(this IServiceCollection services, Action<DistillationTrainerOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<DistillationTrainerOptions>().Configure(configure);
        return AddCore(services);
    }

    private static IServiceCollection AddCore(IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DistillationTrainerOptions>, DistillationTrainerOptionsValidator>());
        services.TryAddSingleton<IDistillationTrainerFactory, DistillationTrainerFactory>();
        return services;
    }
}
