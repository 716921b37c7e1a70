using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;
using DenseLongTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>
/// Every exporter at every opset it accepts, run in ONNX Runtime against TorchSharp; and export options applied the
/// same way to every kind of model.
/// </summary>
public class OpsetAndOptionsTests
{
    public static TheoryData<int> AcceptedOpsets()
    {
        var data = new TheoryData<int>();
        for (int opset = OnnxExportOptions.MinimumOpset; opset <= OnnxExportOptions.MaximumOpset; opset++) data.Add(opset);
        return data;
    }

    private static string TempFile() => Path.Combine(Path.GetTempPath(), $"kd-opset-{Guid.NewGuid():N}.onnx");

    [Theory]
    [MemberData(nameof(AcceptedOpsets))]
    public void Every_exporter_writes_a_graph_ONNX_Runtime_runs_and_that_matches_TorchSharp(int opset)
    {
        var options = new OnnxExportOptions { Opset = opset };
        manual_seed(1);
        // Every layer kind the Sequential exporter writes, in two stacks.
        var mlp = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.GELU(), nn.LayerNorm(16), nn.SiLU(), nn.Linear(16, 8), nn.Tanh(),
            nn.Sigmoid(), nn.Dropout(0.1), nn.GELU(TorchSharp.Modules.GELU.Approximate.tanh));
        SequentialShouldMatch(mlp, randn(3, 12), [-1, 12], options);
        var cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding: 1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2, stride: 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3));
        SequentialShouldMatch(cnn, randn(2, 1, 10, 10), [-1, 1, 10, 10], options);
        var embedding = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 20));
        SequentialShouldMatch(embedding, randint(0, 20, [2, 5]), [-1, -1], options, ScalarType.Int64);

        var gpt = new GptModel(new GptConfig { VocabSize = 23, ContextLength = 10, Width = 16, Heads = 2, Layers = 2, Dropout = 0 });
        DecoderShouldMatch(path => OnnxExport.Export(gpt, path, hiddenStates: true, options), gpt, 23);
        var llama = new LlamaModel(new LlamaConfig
        {
            VocabSize = 23, ContextLength = 10, Width = 16, Heads = 4, KeyValueHeads = 2, Layers = 2, FeedForwardWidth = 24, SlidingWindow = 4, QueryKeyValueBias = true,
        });
        DecoderShouldMatch(path => OnnxExport.Export(llama, path, hiddenStates: true, options), llama, 23);
        var bert = new BertModel(new BertConfig { VocabSize = 23, ContextLength = 10, Width = 16, Heads = 2, Layers = 2, Dropout = 0, NumLabels = 3, Head = BertHead.SequenceClassification });
        bert.eval();
        string bertPath = TempFile();
        try
        {
            OnnxExport.Export(bert, bertPath, hiddenStates: true, options);
            using var session = new InferenceSession(bertPath);
            Tensor ids = randint(0, 23, [2, 6]), mask = tensor(new long[,] { { 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 0, 0, 0 } }), types = zeros(2, 6, dtype: ScalarType.Int64);
            using ModelOutput expected = bert.Run(new TokenBatch(ids, mask, types), OutputRequest.LogitsOnly);
            NamedOnnxValue Input(string name, Tensor t) => NamedOnnxValue.CreateFromTensor(name, new DenseLongTensor(t.contiguous().data<long>().ToArray(), [2, 6]));
            using var results = session.Run([Input("input_ids", ids), Input("attention_mask", mask), Input("token_type_ids", types)]);
            Difference(results.First(r => r.Name == "logits").AsTensor<float>(), expected.Logits).Should().BeLessThan(1e-4f, $"BERT at opset {opset}");
        }
        finally
        {
            File.Delete(bertPath);
        }
    }

    [Theory]
    [InlineData(OnnxExportOptions.MinimumOpset - 1)]
    [InlineData(OnnxExportOptions.MaximumOpset + 1)]
    public void An_opset_outside_the_checked_range_is_refused_for_every_exporter_and_nothing_is_written(int opset)
    {
        string path = TempFile();
        var options = new OnnxExportOptions { Opset = opset };
        var gpt = new GptModel(new GptConfig { VocabSize = 11, ContextLength = 4, Width = 8, Heads = 2, Layers = 1, Dropout = 0 });

        FluentActions.Invoking(() => OnnxExport.Export(nn.Sequential(nn.Linear(2, 2)), [-1, 2], path, options: options)).Should().Throw<ArgumentException>()
            .WithMessage($"Opset must be from 17 to {OnnxExportOptions.MaximumOpset}*got {opset}.*").Which.ParamName.Should().Be("Opset");
        FluentActions.Invoking(() => OnnxExport.Export(gpt, path, options: options)).Should().Throw<ArgumentException>().WithMessage("Opset must be*");
        File.Exists(path).Should().BeFalse();
    }

    [Fact]
    public void Options_given_to_a_transformer_export_keep_its_default_names_unless_they_set_others()
    {
        var gpt = new GptModel(new GptConfig { VocabSize = 11, ContextLength = 6, Width = 8, Heads = 2, Layers = 1, Dropout = 0 });
        string path = TempFile();
        try
        {
            OnnxExport.Export(gpt, path, hiddenStates: true, new OnnxExportOptions { Opset = 18, ProducerName = "me" });
            using (var session = new InferenceSession(path))
            {
                session.InputMetadata.Keys.Should().Equal("input_ids");
                session.OutputMetadata.Keys.Should().Equal("logits", "hidden.0", "hidden.1");
            }
            OnnxExport.Export(gpt, path, options: new OnnxExportOptions { InputName = "tokens", OutputName = "scores" });
            using (var session = new InferenceSession(path))
            {
                session.InputMetadata.Keys.Should().Equal("tokens");
                session.OutputMetadata.Keys.Should().Equal("scores");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Hidden_state_layers_on_a_transformer_export_are_refused_rather_than_ignored()
    {
        var gpt = new GptModel(new GptConfig { VocabSize = 11, ContextLength = 6, Width = 8, Heads = 2, Layers = 1, Dropout = 0 });
        string path = TempFile();

        FluentActions.Invoking(() => OnnxExport.Export(gpt, path, options: new OnnxExportOptions { HiddenStateLayers = ["blocks.0"] }))
            .Should().Throw<ArgumentException>().WithMessage("HiddenStateLayers names layers of a Sequential export; a transformer export takes hiddenStates: true*blocks.0*")
            .Which.ParamName.Should().Be("options");
        File.Exists(path).Should().BeFalse();
    }

    private static void SequentialShouldMatch(nn.Module<Tensor, Tensor> model, Tensor input, long[] shape, OnnxExportOptions options, ScalarType type = ScalarType.Float32)
    {
        string path = TempFile();
        try
        {
            model.eval();
            OnnxExport.Export(model, shape, path, type, options);
            using var session = new InferenceSession(path);
            int[] dims = input.shape.Select(d => (int)d).ToArray();
            NamedOnnxValue value = type == ScalarType.Int64
                ? NamedOnnxValue.CreateFromTensor("input", new DenseLongTensor(input.data<long>().ToArray(), dims))
                : NamedOnnxValue.CreateFromTensor("input", new DenseTensor(input.data<float>().ToArray(), dims));
            using var results = session.Run([value]);
            using var noGrad = no_grad();
            Difference(results.Single().AsTensor<float>(), model.call(input)).Should().BeLessThan(1e-4f, $"{model.GetType().Name} at opset {options.Opset}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static void DecoderShouldMatch(Action<string> export, IModuleModel<TokenBatch> model, int vocabulary)
    {
        string path = TempFile();
        try
        {
            ((nn.Module)model).eval();
            export(path);
            using var session = new InferenceSession(path);
            Tensor ids = randint(0, vocabulary, [2, 7]);
            using ModelOutput expected = model.Run(new TokenBatch(ids), new OutputRequest(HiddenStates: true));
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input_ids", new DenseLongTensor(ids.data<long>().ToArray(), [2, 7]))]);
            Difference(results.First(r => r.Name == "logits").AsTensor<float>(), expected.Logits).Should().BeLessThan(1e-4f);
            for (int layer = 0; layer < expected.HiddenStates!.Count; layer++)
            {
                Difference(results.First(r => r.Name == $"hidden.{layer}").AsTensor<float>(), expected.HiddenStates[layer]).Should().BeLessThan(1e-4f, $"hidden.{layer}");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static float Difference(Microsoft.ML.OnnxRuntime.Tensors.Tensor<float> actual, Tensor expected)
    {
        actual.Dimensions.ToArray().Select(d => (long)d).Should().Equal(expected.shape);
        return (tensor(actual.ToArray(), expected.shape) - expected).abs().max().item<float>();
    }
}
