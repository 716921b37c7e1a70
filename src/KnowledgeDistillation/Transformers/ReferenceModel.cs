using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// What the reference transformers (<see cref="GptModel"/>, <see cref="BertModel"/>, <see cref="LlamaModel"/>) share:
/// a validated configuration, TorchSharp's logits-only <c>call(ids)</c>, and <see cref="Run(TokenBatch, OutputRequest)"/>,
/// which returns logits with the hidden states, attention maps and queries, keys and values a request asks for.
/// </summary>
/// <typeparam name="TConfig">The model's configuration type.</typeparam>
public abstract class ReferenceModel<TConfig> : nn.Module<Tensor, Tensor>, IModuleModel<TokenBatch> where TConfig : TransformerConfig
{
    /// <summary>Checks <paramref name="config"/> before the derived model builds a single layer.</summary>
    /// <exception cref="ArgumentException">The configuration is invalid; the message names the setting.</exception>
    private protected ReferenceModel(string name, TConfig config) : base(name)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
    }

    /// <summary>The configuration the model was built with.</summary>
    public TConfig Config { get; }

    /// <summary>
    /// Recompute each block's activations in the backward pass instead of keeping them (activation checkpointing):
    /// peak memory falls by roughly the blocks' activations, a step costs about one more forward pass. Applies while
    /// gradients are on and neither attention maps nor queries, keys and values are requested; gradients are those of the
    /// plain path. Off by default; not saved with the model.
    /// </summary>
    public bool ActivationCheckpointing { get; set; }

    nn.Module IModuleModel<TokenBatch>.Module => this;

    /// <summary>Logits, hidden states, attention maps and the self-attention queries, keys and values.</summary>
    public ModelOutputKinds Provides => TransformerStack.Outputs;

    /// <summary>The logits for unpadded token ids <c>[B, S]</c> (the head's: <c>[B, S, V]</c> for a language model).</summary>
    public override Tensor forward(Tensor inputIds) => Run(new TokenBatch(inputIds), OutputRequest.LogitsOnly).Logits;

    /// <summary>Runs the model on <paramref name="batch"/>, returning what <paramref name="request"/> asks for.</summary>
    public abstract ModelOutput Run(TokenBatch batch, OutputRequest request);
}

/// <summary>A reference decoder: a <see cref="ReferenceModel{TConfig}"/> that also continues from a <see cref="KeyValueCache"/>.</summary>
/// <typeparam name="TConfig">The model's configuration type.</typeparam>
public abstract class DecoderModel<TConfig> : ReferenceModel<TConfig>, ICausalLanguageModel where TConfig : TransformerConfig
{
    private protected DecoderModel(string name, TConfig config) : base(name, config)
    {
    }

    /// <inheritdoc />
    public int ContextLength => Config.ContextLength;

    /// <inheritdoc />
    public int VocabSize => Config.VocabSize;

    /// <summary>Runs the model; attention is causal, and additionally masked by <see cref="TokenBatch.AttentionMask"/> when given.</summary>
    public override ModelOutput Run(TokenBatch batch, OutputRequest request) => Run(batch, request, null);

    /// <summary>
    /// Runs the model on new tokens after those in <paramref name="cache"/> (none when it is null or empty), appending
    /// their keys and values to it. Positions continue after the cached tokens unless <see cref="TokenBatch.PositionIds"/> says otherwise.
    /// </summary>
    public abstract ModelOutput Run(TokenBatch batch, OutputRequest request, KeyValueCache? cache);
}
