

using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>A model built and loaded from a pretrained folder.</summary>
/// <typeparam name="TModel">The model type.</typeparam>
/// <param name="Model">The model, in evaluation mode (as Hugging Face's <c>from_pretrained</c> returns it), on the CPU, in float32.</param>
/// <param name="Source">What <c>config.json</c> said.</param>
/// <param name="Report">What was loaded, left unused, ignored or left as initialised, and what was assumed.</param>
public sealed record PretrainedModel<TModel>(TModel Model, PretrainedConfig Source, WeightLoadReport Report);
