using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DistilMiniLM;

/// <summary>
/// A student sentence encoder: a <see cref="BertModel"/> whose last hidden state is mean-pooled over the mask (the
/// teacher's pooling, from the same <see cref="Pooling"/> code). A student narrower than the teacher carries a linear
/// projection to the teacher's 384 dimensions, used only to compare with the teacher during distillation: the student
/// ships without it, and its probe features are its own pooled states.
/// </summary>
internal sealed class SentenceEncoder : nn.Module<TokenBatch, Tensor>
{
    private readonly BertModel encoder;
    private readonly Linear? projection;

    public SentenceEncoder(BertModel encoder, int teacherWidth) : base(nameof(SentenceEncoder))
    {
        this.encoder = encoder;
        if (encoder.Config.Width != teacherWidth) projection = nn.Linear(encoder.Config.Width, teacherWidth);
        RegisterComponents();
    }

    public BertModel Encoder => encoder;

    public int Width => encoder.Config.Width;

    /// <summary>The student's own sentence embedding: mean over the real tokens of the last hidden state.</summary>
    public Tensor Pool(TokenBatch batch) => Pooling.Apply(SequencePooling.Mean, encoder.Run(batch, OutputRequest.LogitsOnly).Logits, batch.AttentionMask);

    /// <summary>The embedding in the teacher's space (through the projection when the widths differ).</summary>
    public override Tensor forward(TokenBatch batch)
    {
        Tensor pooled = Pool(batch);
        return projection is null ? pooled : projection.forward(pooled);
    }
}

/// <summary>The labels-only control: the same encoder and pooling with a linear classifier, trained with cross-entropy.</summary>
internal sealed class SentenceClassifier : nn.Module<TokenBatch, Tensor>
{
    private readonly SentenceEncoder encoder;
    private readonly Linear classifier;

    public SentenceClassifier(SentenceEncoder encoder, int classes) : base(nameof(SentenceClassifier))
    {
        this.encoder = encoder;
        classifier = nn.Linear(encoder.Width, classes);
        RegisterComponents();
    }

    public override Tensor forward(TokenBatch batch) => classifier.forward(encoder.Pool(batch));
}
