using KnowledgeDistillation.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// A Llama-family causal language model (Llama, Qwen2, Mistral): token embeddings, <see cref="TransformerConfig.Layers"/>
/// pre-norm blocks of grouped-query attention with rotary positions and a gated feed-forward network, a final RMS
/// norm and an LM head (tied to the embeddings or not). <c>call(ids)</c> maps <c>[B, S]</c> token ids to
/// <c>[B, S, V]</c> logits; <see cref="Run(TokenBatch, OutputRequest)"/> also returns hidden states and attention maps on request.
/// </summary>
/// <remarks>
/// Parameter names: <c>token_embedding</c>, <c>blocks.{i}.…</c> (see <see cref="LlamaBlock"/>), <c>final_norm</c>, and
/// <c>lm_head</c> when untied. Positions are 0 … S − 1 for every row, as in Hugging Face's forward without
/// <c>position_ids</c>; pad on the right.
/// </remarks>
public sealed class LlamaModel : nn.Module<Tensor, Tensor>, ICausalLanguageModel
{
    private readonly Embedding token_embedding;
    private readonly ModuleList<LlamaBlock> blocks;
    private readonly RmsNorm final_norm;
    private readonly Linear? lm_head;

    /// <summary>Creates a model with weights drawn from N(0, 0.02²), biases 0 and norms 1.</summary>
    /// <exception cref="ArgumentException">The configuration is invalid; the message names the setting.</exception>
    public LlamaModel(LlamaConfig config) : base(nameof(LlamaModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        token_embedding = nn.Embedding(config.VocabSize, config.Width);
        blocks = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(_ => new LlamaBlock(config)).ToArray());
        final_norm = new RmsNorm(config.Width, config.LayerNormEpsilon);
        if (!config.TieEmbeddings) lm_head = nn.Linear(config.Width, config.VocabSize, hasBias: false);
        RegisterComponents();
        TransformerInitialization.Apply(this);
    }

    /// <summary>The configuration the model was built with.</summary>
    public LlamaConfig Config { get; }

    /// <summary>The transformer blocks, first to last.</summary>
    public IReadOnlyList<LlamaBlock> Blocks => blocks.ToList();

    nn.Module IModuleModel<TokenBatch>.Module => this;

    /// <summary>Logits, hidden states, attention maps and the self-attention queries, keys and values.</summary>
    public ModelOutputKinds Provides => ModelOutputKinds.Logits | ModelOutputKinds.HiddenStates | ModelOutputKinds.Attention | ModelOutputKinds.QueryKeyValues;

    /// <inheritdoc />
    public int ContextLength => Config.ContextLength;

    /// <inheritdoc />
    public int VocabSize => Config.VocabSize;

    /// <summary>Logits <c>[B, S, V]</c> for token ids <c>[B, S]</c>.</summary>
    public override Tensor forward(Tensor inputIds) => Run(new TokenBatch(inputIds), OutputRequest.LogitsOnly).Logits;

    /// <summary>Runs the model; attention is causal (and windowed when configured), and additionally masked by <see cref="TokenBatch.AttentionMask"/> when given.</summary>
    public ModelOutput Run(TokenBatch batch, OutputRequest request) => Run(batch, request, null);

    /// <summary>
    /// Runs the model on new tokens after those in <paramref name="cache"/> (none when it is null or empty), appending
    /// their keys and values to it. Positions continue after the cached tokens unless <see cref="TokenBatch.PositionIds"/> says otherwise.
    /// </summary>
    public ModelOutput Run(TokenBatch batch, OutputRequest request, KeyValueCache? cache)
    {
        ArgumentNullException.ThrowIfNull(request);
        long past = cache?.Length ?? 0;
        TokenInputs.Validate(batch, Config, typeVocabSize: null, past, acceptsPositions: true);
        using var scope = NewDisposeScope();
        Tensor ids = batch.InputIds.to(ScalarType.Int64);
        long length = ids.shape[1];
        Tensor x = token_embedding.forward(ids);
        Tensor? mask = AttentionMasks.ForDecoder(batch.AttentionMask?.to(x.device), length, past, Config.SlidingWindow, x.dtype, x.device);
        Tensor positions = batch.PositionIds?.to(ScalarType.Int64) ?? arange(past, past + length, dtype: ScalarType.Int64, device: x.device);
        (Tensor cos, Tensor sin) = RotaryEmbedding.Angles(positions, Config.EffectiveHeadWidth, Config.RopeTheta, x.dtype);

        TransformerStack.Result run = TransformerStack.Run(blocks, x, request, (block, layer, h, maps, qkv) => block.Apply(h, mask, cos, sin, maps, cache, layer, qkv));
        cache?.Advance(length);
        Tensor last = run.Finish(final_norm.forward, Config.HiddenStates);
        Tensor logits = lm_head is null ? F.linear(last, token_embedding.weight!) : lm_head.forward(last);
        return new ModelOutput(logits, run.HiddenStates, run.Scores, run.Probabilities, batch.AttentionMask) { QueryKeyValues = run.States }.MoveToOuterDisposeScope();
    }
}
