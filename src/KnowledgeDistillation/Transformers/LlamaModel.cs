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
/// <c>[B, S, V]</c> logits; <see cref="DecoderModel{TConfig}.Run(TokenBatch, OutputRequest)"/> also returns hidden states and attention maps on request.
/// </summary>
/// <remarks>
/// Parameter names: <c>token_embedding</c>, <c>blocks.{i}.…</c> (see <see cref="LlamaBlock"/>), <c>final_norm</c>, and
/// <c>lm_head</c> when untied. Positions are 0 … S − 1 for every row, as in Hugging Face's forward without
/// <c>position_ids</c>; pad on the right.
/// </remarks>
public sealed class LlamaModel : DecoderModel<LlamaConfig>
{
    private readonly Embedding token_embedding;
    private readonly ModuleList<LlamaBlock> blocks;
    private readonly RmsNorm final_norm;
    private readonly Linear? lm_head;

    /// <summary>Creates a model with weights drawn from N(0, 0.02²), biases 0 and norms 1.</summary>
    /// <exception cref="ArgumentException">The configuration is invalid; the message names the setting.</exception>
    public LlamaModel(LlamaConfig config) : base(nameof(LlamaModel), config)
    {
        token_embedding = nn.Embedding(config.VocabSize, config.Width);
        blocks = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(_ => new LlamaBlock(config)).ToArray());
        final_norm = new RmsNorm(config.Width, config.LayerNormEpsilon);
        if (!config.TieEmbeddings) lm_head = nn.Linear(config.Width, config.VocabSize, hasBias: false);
        RegisterComponents();
        TransformerInitialization.Apply(this);
    }

    /// <summary>The transformer blocks, first to last.</summary>
    public IReadOnlyList<LlamaBlock> Blocks => blocks.ToList();

    /// <inheritdoc />
    public override ModelOutput Run(TokenBatch batch, OutputRequest request, KeyValueCache? cache)
    {
        ArgumentNullException.ThrowIfNull(request);
        long past = cache?.Length ?? 0;
        TokenInputs.Validate(batch, Config, typeVocabSize: null, past, acceptsPositions: true);
        using var scope = NewDisposeScope();
        Tensor ids = batch.InputIds.to(ScalarType.Int64);
        long length = ids.shape[1];
        Tensor x = token_embedding.forward(ids);
        Tensor? mask = AttentionMasks.ForDecoder(batch.AttentionMask?.to(x.device), length, past, Config.SlidingWindow, x.dtype, x.device);
        Tensor positions = TransformerStack.DecoderPositions(batch, past, length, x.device);
        (Tensor cos, Tensor sin) = RotaryEmbedding.Angles(positions, Config.EffectiveHeadWidth, Config.RopeTheta, x.dtype);

        TransformerStack.Result run = TransformerStack.Run(blocks, x, request, (block, layer, h, maps, qkv) => block.Apply(h, mask, cos, sin, maps, cache, layer, qkv),
            ActivationCheckpointing && cache is null, mask, cos, sin);
        cache?.Advance(length);
        Tensor last = run.Finish(final_norm.forward, Config.HiddenStates);
        return run.ToOutput(TransformerStack.LanguageModelLogits(last, lm_head, token_embedding), batch.AttentionMask);
    }
}
