using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>What a pretrained folder's <c>config.json</c> describes, translated into this library's terms.</summary>
/// <param name="Architecture">The Hugging Face class, e.g. <c>LlamaForCausalLM</c> (from <c>architectures</c>, or implied by <c>model_type</c>).</param>
/// <param name="ModelType">The <c>model_type</c> field.</param>
/// <param name="Config">The configuration to build the model with (<see cref="GptConfig"/>, <see cref="BertConfig"/> or <see cref="LlamaConfig"/>).</param>
/// <param name="StoredDtype">The <c>torch_dtype</c> field (weights are loaded as float32 whatever it is); null when absent.</param>
/// <param name="Notes">Defaults taken for absent fields, and fields read but without effect here.</param>
public sealed record PretrainedConfig(string Architecture, string ModelType, TransformerConfig Config, string? StoredDtype, IReadOnlyList<string> Notes);
