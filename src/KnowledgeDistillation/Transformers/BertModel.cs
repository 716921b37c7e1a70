using KnowledgeDistillation.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// A BERT-style bidirectional encoder: word, position and token-type embeddings with a layer norm,
/// <see cref="TransformerConfig.Layers"/> blocks, then the configured <see cref="BertHead"/> — an optional pooler
/// (dense + tanh on the first token) and a linear classifier, a masked-LM head, or none. <c>call(ids)</c> maps
/// <c>[B, S]</c> ids to the head's logits; <see cref="Run"/> takes a padding mask and returns hidden states and
/// attention on request.
/// </summary>
/// <remarks>
/// Parameter names: <c>word_embedding</c>, <c>position_embedding</c>, <c>token_type_embedding</c>,
/// <c>embedding_norm</c>, <c>blocks.{i}.…</c>, <c>final_norm</c> (pre-norm configurations only), <c>pooler</c>
/// (when <see cref="BertConfig.UsePooler"/>), <c>classifier</c> (classification head), <c>mlm_transform</c>,
/// <c>mlm_norm</c> and <c>mlm_bias</c> (masked-LM head, whose decoder is the word embedding matrix). Without the
/// pooler the classifier reads the first token's hidden state directly: the "pooler removed" student of DistilBERT.
/// </remarks>
public sealed class BertModel : ReferenceModel<BertConfig>
{
    private readonly Embedding word_embedding;
    private readonly Embedding position_embedding;
    private readonly Embedding token_type_embedding;
    private readonly LayerNorm embedding_norm;
    private readonly Dropout dropout;
    private readonly ModuleList<TransformerBlock> blocks;
    private readonly LayerNorm? final_norm;
    private readonly Linear? pooler;
    private readonly Linear? classifier;
    private readonly Linear? mlm_transform;
    private readonly LayerNorm? mlm_norm;
    private readonly Parameter? mlm_bias;

    /// <summary>Creates a model initialised as GPT-2 and BERT are: weights N(0, 0.02²), biases 0, norms 1.</summary>
    /// <exception cref="ArgumentException">The configuration is invalid; the message names the setting.</exception>
    public BertModel(BertConfig config) : base(nameof(BertModel), config)
    {
        word_embedding = nn.Embedding(config.VocabSize, config.Width);
        position_embedding = nn.Embedding(config.ContextLength, config.Width);
        token_type_embedding = nn.Embedding(config.TypeVocabSize, config.Width);
        embedding_norm = nn.LayerNorm(config.Width, config.LayerNormEpsilon);
        dropout = nn.Dropout(config.Dropout);
        blocks = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(_ => new TransformerBlock(config)).ToArray());
        if (config.NormPlacement == NormPlacement.Pre) final_norm = nn.LayerNorm(config.Width, config.LayerNormEpsilon);
        if (config.UsePooler) pooler = nn.Linear(config.Width, config.Width);
        if (config.Head == BertHead.SequenceClassification) classifier = nn.Linear(config.Width, config.NumLabels);
        if (config.Head == BertHead.MaskedLM)
        {
            mlm_transform = nn.Linear(config.Width, config.Width);
            mlm_norm = nn.LayerNorm(config.Width, config.LayerNormEpsilon);
            mlm_bias = nn.Parameter(zeros(config.VocabSize));
        }
        RegisterComponents();
        TransformerInitialization.Apply(this);
    }

    /// <summary>The transformer blocks, first to last.</summary>
    public IReadOnlyList<TransformerBlock> Blocks => blocks.ToList();

    /// <summary>Runs the encoder; padded keys (mask 0/false) receive no attention.</summary>
    public override ModelOutput Run(TokenBatch batch, OutputRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        TokenInputs.Validate(batch, Config, Config.TypeVocabSize);
        using var scope = NewDisposeScope();
        Tensor ids = batch.InputIds.to(ScalarType.Int64);
        Tensor positions = arange(ids.shape[1], dtype: ScalarType.Int64, device: ids.device);
        Tensor types = batch.TokenTypeIds?.to(ScalarType.Int64) ?? zeros_like(ids);
        Tensor x = dropout.forward(embedding_norm.forward(
            word_embedding.forward(ids) + position_embedding.forward(positions) + token_type_embedding.forward(types)));
        Tensor? mask = AttentionMasks.ForPadding(batch.AttentionMask?.to(x.device), causal: false, x.dtype);

        TransformerStack.Result run = TransformerStack.Run(blocks, x, mask, causal: false, request, checkpoint: ActivationCheckpointing);
        Tensor h = final_norm is null ? run.Last : run.Finish(final_norm.forward, Config.HiddenStates);
        return run.ToOutput(Head(h), batch.AttentionMask);
    }

    private Tensor Head(Tensor h)
    {
        switch (Config.Head)
        {
            case BertHead.SequenceClassification:
                Tensor first = h.select(1, 0);
                Tensor pooled = pooler is null ? first : pooler.call(first).tanh();
                return classifier!.call(dropout.forward(pooled));
            case BertHead.MaskedLM:
                Tensor t = mlm_norm!.forward(Activations.Apply(mlm_transform!.call(h), Config.Activation));
                return F.linear(t, word_embedding.weight!, mlm_bias);
            default:
                return h.alias();
        }
    }
}
