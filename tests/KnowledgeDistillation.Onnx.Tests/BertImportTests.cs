using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>
/// <see cref="OnnxImport.Bert(string, OnnxBertImportOptions?)"/> on the two real pretrained encoders NuGet serves:
/// the imported TorchSharp model and ONNX Runtime running the same file agree on the last hidden state.
/// </summary>
public class BertImportTests(RealTextEncoders encoders) : IClassFixture<RealTextEncoders>
{
    [Theory]
    [InlineData("MiniLM")]
    [InlineData("ArcticXs")]
    public void Imported_encoder_matches_ONNX_Runtime_on_real_sentences_in_a_padded_batch(string name)
    {
        string folder = encoders.Folder(name);
        string modelPath = Path.Combine(folder, "model.onnx");
        (long[,] ids, long[,] mask) = RealTextEncoders.Batch(folder, RealTextEncoders.Sentences);
        int rows = ids.GetLength(0), length = ids.GetLength(1);
        length.Should().BeGreaterThan(30, "the batch must hold long and short rows, padded");

        float[] expected = RealTextEncoders.LastHiddenState(modelPath, ids, mask);

        OnnxImportedModel<BertModel> imported = OnnxImport.Bert(modelPath);
        using BertModel model = imported.Model;
        using var scope = NewDisposeScope();
        Tensor idTensor = tensor(ids.Cast<long>().ToArray(), [rows, length]);
        Tensor maskTensor = tensor(mask.Cast<long>().ToArray(), [rows, length]);
        Tensor actual;
        using (no_grad()) actual = model.Run(new TokenBatch(idTensor, maskTensor), OutputRequest.LogitsOnly).Logits;

        actual.shape.Should().Equal(rows, length, 384);
        float[] got = actual.contiguous().data<float>().ToArray();
        double maxDifference = got.Zip(expected, (a, b) => Math.Abs((double)a - b)).Max();
        maxDifference.Should().BeLessThan(1e-4, $"{name}: the imported model must reproduce ONNX Runtime's last_hidden_state");
        expected.Select(Math.Abs).Max().Should().BeGreaterThan(0.5f, "the comparison is of real activations, not of zeros");
    }

    [Theory]
    [InlineData("MiniLM", true)]
    [InlineData("ArcticXs", false)]
    public void Import_reads_the_configuration_from_the_graph_and_consumes_every_weight(string name, bool pooler)
    {
        OnnxImportedModel<BertModel> imported = OnnxImport.Bert(Path.Combine(encoders.Folder(name), "model.onnx"));
        using BertModel model = imported.Model;
        BertConfig c = model.Config;
        (c.VocabSize, c.Width, c.Layers, c.Heads, c.FeedForwardWidth, c.ContextLength, c.TypeVocabSize).Should().Be((30522, 384, 6, 12, 1536, 512, 2));
        c.LayerNormEpsilon.Should().Be(1e-12);
        c.Activation.Should().Be(FeedForwardActivation.Gelu);
        c.Head.Should().Be(BertHead.None);
        c.UsePooler.Should().Be(pooler);
        imported.Report.Unused.Should().BeEmpty();
        imported.Report.Initialized.Should().BeEmpty();
        // 3 embeddings + embedding norm (2) + 6 × (qkv 2 + output 2 + 2 norms × 2 + feed-forward 4) (+ pooler 2), in our names.
        imported.Report.Loaded.Should().HaveCount(5 + 6 * 12 + (pooler ? 2 : 0));
        imported.Report.Notes.Should().Contain(n => n.Contains("6 layers, width 384, 12 heads", StringComparison.Ordinal));
        model.training.Should().BeFalse("an imported teacher starts in evaluation mode");
    }

    [Fact]
    public void A_graph_that_is_not_a_BERT_export_is_refused_with_the_names_it_has()
    {
        var gpt = new GptModel(new GptConfig { VocabSize = 20, ContextLength = 8, Width = 16, Heads = 2, Layers = 1 });
        string path = Path.Combine(Path.GetTempPath(), $"kd-not-bert-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(gpt, path);
            Action act = () => OnnxImport.Bert(path);
            act.Should().Throw<InvalidDataException>().WithMessage("*is not a BERT encoder export*embeddings.word_embeddings.weight*");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_file_that_is_not_ONNX_is_refused_and_left_as_it_was()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kd-not-onnx-{Guid.NewGuid():N}.onnx");
        byte[] bytes = [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 37 % 251))];
        File.WriteAllBytes(path, bytes);
        try
        {
            Action act = () => OnnxImport.Bert(path);
            act.Should().Throw<InvalidDataException>().WithMessage($"*{Path.GetFileName(path)}*");
            File.ReadAllBytes(path).Should().Equal(bytes);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_missing_initializer_is_named_in_the_error()
    {
        // all-MiniLM-L6-v2 without one layer norm's weight: the graph still parses, the encoder cannot be built.
        string source = Path.Combine(encoders.MiniLM, "model.onnx");
        var model = global::Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(source));
        var removed = model.Graph.Initializer.Single(t => t.Name == "encoder.layer.2.attention.output.LayerNorm.weight");
        model.Graph.Initializer.Remove(removed);
        string path = Path.Combine(Path.GetTempPath(), $"kd-missing-{Guid.NewGuid():N}.onnx");
        try
        {
            using (FileStream file = File.Create(path)) Google.Protobuf.MessageExtensions.WriteTo(model, file);
            Action act = () => OnnxImport.Bert(path);
            act.Should().Throw<InvalidDataException>().WithMessage("*encoder.layer.2.attention.output.LayerNorm.weight*");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
