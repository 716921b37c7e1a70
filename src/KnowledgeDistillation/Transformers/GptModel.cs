using KnowledgeDistillation.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// A GPT-style causal language model: token and learned position embeddings, <see cref="TransformerConfig.Layers"/>
/// transformer blocks, a final layer norm and an LM head (tied to the token embeddings or not).
/// <c>call(ids)</c> maps <c>[B, S]</c> token ids to <c>[B, S, V]</c> logits; <see cref="DecoderModel{TConfig}.Run(TokenBatch, OutputRequest)"/> also returns
/// hidden states and attention maps on request.
/// </summary>
/// <remarks>
/// Parameter names: <c>token_embedding</c>, <c>position_embedding</c>, <c>blocks.{i}.…</c> (see
/// <see cref="TransformerBlock"/>), <c>final_norm</c>, and <c>lm_head</c> when untied. Hidden states are the
/// embedding output and each block's output, before the final norm.
/// </remarks>
public sealed class GptModel : DecoderModel<GptConfig>
{
    private readonly Embedding token_embedding;
    private readonly Embedding position_embedding;
    private readonly Dropout embedding_dropout;
    private readonly ModuleList<TransformerBlock> blocks;
    private readonly LayerNorm final_norm;
    private readonly Linear? lm_head;

    /// <summary>Creates a model initialised as GPT-2 and BERT are: weights N(0, 0.02²), biases 0, norms 1.</summary>
    /// <exception cref="ArgumentException">The configuration is invalid; the message names the setting.</exception>
    public GptModel(GptConfig config) : base(nameof(GptModel), config)
    {
        token_embedding = nn.Embedding(config.VocabSize, config.Width);
        position_embedding = nn.Embedding(config.ContextLength, config.Width);
        embedding_dropout = nn.Dropout(config.Dropout);
        blocks = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(_ => new TransformerBlock(config)).ToArray());
        final_norm = nn.LayerNorm(config.Width, config.LayerNormEpsilon);
        if (!config.TieEmbeddings) lm_head = nn.Linear(config.Width, config.VocabSize, hasBias: false);
        RegisterComponents();
        TransformerInitialization.Apply(this);
    }

    /// <summary>The transformer blocks, first to last.</summary>
    public IReadOnlyList<TransformerBlock> Blocks => blocks.ToList();

    /// <inheritdoc />
    public override ModelOutput Run(TokenBatch batch, OutputRequest request, KeyValueCache? cache)
    {
        ArgumentNullException.ThrowIfNull(request);
        long past = cache?.Length ?? 0;
        TokenInputs.Validate(batch, Config, typeVocabSize: null, past, acceptsPositions: true);
        using var scope = NewDisposeScope();
        Tensor ids = batch.InputIds.to(ScalarType.Int64);
        long length = ids.shape[1];
        Tensor positions = TransformerStack.DecoderPositions(batch, past, length, ids.device);
        Tensor x = embedding_dropout.forward(token_embedding.forward(ids) + position_embedding.forward(positions));
        Tensor? mask = AttentionMasks.ForDecoder(batch.AttentionMask?.to(x.device), length, past, null, x.dtype, x.device);

        TransformerStack.Result run = TransformerStack.Run(blocks, x, mask, causal: true, request, cache, ActivationCheckpointing);
        cache?.Advance(length);
        Tensor h = run.Finish(final_norm.forward, Config.HiddenStates);
        return run.ToOutput(TransformerStack.LanguageModelLogits(h, lm_head, token_embedding), batch.AttentionMask);
    }
}
