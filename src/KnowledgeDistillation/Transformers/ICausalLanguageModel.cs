using KnowledgeDistillation.Models;

namespace KnowledgeDistillation.Transformers;

/// <summary>A decoder that can continue from a <see cref="KeyValueCache"/>: what generation needs (<see cref="GptModel"/>, <see cref="LlamaModel"/>).</summary>
public interface ICausalLanguageModel : IModuleModel<TokenBatch>
{
    /// <summary>Longest sequence the model accepts, prompt and completion together.</summary>
    int ContextLength { get; }

    /// <summary>Number of token ids: every id the model reads or generation writes lies in [0, VocabSize).</summary>
    int VocabSize { get; }

    /// <summary>Runs the model on new tokens after those in <paramref name="cache"/>, appending their keys and values to it.</summary>
    ModelOutput Run(TokenBatch batch, OutputRequest request, KeyValueCache? cache);
}
