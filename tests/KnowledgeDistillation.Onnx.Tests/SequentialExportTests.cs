using KnowledgeDistillation.Onnx;
using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using DenseLongTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>;
using Tensor = TorchSharp.torch.Tensor;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>Exported <c>Sequential</c> stacks run in ONNX Runtime and match TorchSharp to 1e-4 at several batch sizes.</summary>
public class SequentialExportTests
{
    private static string TempFile() => Path.Combine(Path.GetTempPath(), $"kd-onnx-{Guid.NewGuid():N}.onnx");

    /// <summary>Runs the exported file in ONNX Runtime on <paramref name="input"/> and returns the output and its shape.</summary>
    private static (float[] Values, long[] Shape) RunInOnnxRuntime(string path, Tensor input)
    {
        using var session = new InferenceSession(path);
        string name = session.InputMetadata.Keys.Single();
        NamedOnnxValue value = input.dtype == ScalarType.Int64
            ? NamedOnnxValue.CreateFromTensor(name, new DenseLongTensor(input.data<long>().ToArray(), input.shape.Select(d => (int)d).ToArray()))
            : NamedOnnxValue.CreateFromTensor(name, new DenseTensor(input.data<float>().ToArray(), input.shape.Select(d => (int)d).ToArray()));
        using var results = session.Run([value]);
        var output = (DenseTensor)results.Single().AsTensor<float>();
        return (output.ToArray(), output.Dimensions.ToArray().Select(d => (long)d).ToArray());
    }

    private static void ShouldMatch(nn.Module model, Func<long, Tensor> input, long[] inputShape, ScalarType inputType = ScalarType.Float32, OnnxExportOptions? options = null)
    {
        string path = TempFile();
        try
        {
            model.eval();
            OnnxExport.Export(model, inputShape, path, inputType, options);
            foreach (long batch in new long[] { 1, 3, 8 })
            {
                using var scope = NewDisposeScope();
                Tensor x = input(batch);
                Tensor expected;
                using (no_grad()) expected = ((nn.Module<Tensor, Tensor>)model).call(x);
                (float[] actual, long[] shape) = RunInOnnxRuntime(path, x);
                shape.Should().Equal(expected.shape, $"batch {batch}");
                float gap = (tensor(actual).reshape(shape) - expected).abs().max().item<float>();
                gap.Should().BeLessThan(1e-4f, $"batch {batch}");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_multilayer_perceptron_with_every_activation_and_a_layer_norm()
    {
        manual_seed(1);
        var model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.GELU(), nn.Dropout(0.3), nn.LayerNorm(32),
            nn.Linear(32, 24), nn.SiLU(), nn.Linear(24, 16), nn.Tanh(), nn.Linear(16, 8, hasBias: false), nn.Sigmoid(), nn.GELU(TorchSharp.Modules.GELU.Approximate.tanh));
        ShouldMatch(model, b => randn(b, 12), [-1, 12]);
    }

    [Fact]
    public void A_convolutional_network_with_batch_norm_statistics_and_every_pooling()
    {
        manual_seed(2);
        var model = nn.Sequential(
            ("conv1", nn.Conv2d(1, 8, 3, padding: 1)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(8, 16, 3, stride: 2, padding: 1)), ("bn2", nn.BatchNorm2d(16)), ("relu2", nn.ReLU()), ("avg", nn.AvgPool2d(2, stride: 1)),
            ("block", nn.Sequential(nn.Conv2d(16, 16, 3, padding: 1, groups: 4), nn.ReLU())),
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("head", nn.Linear(16, 10)));
        // Non-trivial running statistics, so that BatchNormalization's evaluation form is really checked.
        model.train();
        using (no_grad()) for (int i = 0; i < 5; i++) model.call(randn(16, 1, 28, 28) * 2 + 0.5);
        ShouldMatch(model, b => randn(b, 1, 28, 28), [-1, 1, 28, 28]);
    }

    [Fact]
    public void Layers_named_like_the_graph_input_or_output_do_not_take_those_names()
    {
        // A last layer called "embedding" once claimed that value name for its bias-free product, so the graph output
        // "embedding" skipped the bias: the names of the graph's inputs and outputs are reserved before any layer is written.
        manual_seed(4);
        var model = nn.Sequential(("input", nn.Linear(6, 8)), ("image", nn.ReLU()), ("embedding", nn.Linear(8, 5)), ("output", nn.Linear(5, 3)));
        using (no_grad()) foreach (var p in model.parameters()) p.add_(0.5);
        ShouldMatch(model, b => randn(b, 6), [-1, 6]);
        ShouldMatch(nn.Sequential(("image", nn.Linear(6, 8)), ("embedding", nn.Linear(8, 5))), b => randn(b, 6), [-1, 6],
            options: new OnnxExportOptions { InputName = "image", OutputName = "embedding" });
        FluentActions.Invoking(() => OnnxExport.Export(model, [-1, 6], TempFile(), options: new OnnxExportOptions { InputName = "x", OutputName = "x" }))
            .Should().Throw<ArgumentException>().WithMessage("*InputName and OutputName must differ*");
    }

    [Fact]
    public void An_embedding_model_takes_int64_token_ids_with_dynamic_batch_and_length()
    {
        manual_seed(3);
        var model = nn.Sequential(nn.Embedding(50, 16), nn.LayerNorm(16), nn.Linear(16, 50));
        string path = TempFile();
        try
        {
            model.eval();
            OnnxExport.Export(model, [-1, -1], path, ScalarType.Int64);
            foreach ((long b, long s) in new[] { (1L, 1L), (2L, 7L), (5L, 13L) })
            {
                Tensor ids = randint(0, 50, [b, s]);
                Tensor expected;
                using (no_grad()) expected = model.call(ids);
                (float[] actual, long[] shape) = RunInOnnxRuntime(path, ids);
                (tensor(actual).reshape(shape) - expected).abs().max().item<float>().Should().BeLessThan(1e-4f);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_module_that_cannot_be_exported_is_named_with_its_path_and_nothing_is_written()
    {
        string path = TempFile();
        var model = nn.Sequential(("features", nn.Sequential(nn.Linear(4, 4), nn.Softmax(1))), ("head", nn.Linear(4, 2)));

        ((Action)(() => OnnxExport.Export(model, [-1, 4], path))).Should().Throw<NotSupportedException>()
            .WithMessage("The module at \"features.1\" (Softmax) cannot be exported to ONNX: no ONNX form for Softmax; supported: Linear*");
        ((Action)(() => OnnxExport.Export(nn.Sequential(nn.AdaptiveAvgPool2d(2)), [-1, 3, 8, 8], path))).Should().Throw<NotSupportedException>()
            .WithMessage("*\"0\" (AdaptiveAvgPool2d)*only an output size of 1×1*");
        ((Action)(() => OnnxExport.Export(nn.Linear(2, 2), [-1, 2], path))).Should().Throw<NotSupportedException>().WithMessage("*(root)*Linear*Sequential*");
        ((Action)(() => OnnxExport.Export(nn.Sequential(nn.Linear(2, 2)), [0, 2], path))).Should().Throw<ArgumentException>().WithMessage("inputShape must list positive sizes or -1*");
        File.Exists(path).Should().BeFalse();
    }
}
