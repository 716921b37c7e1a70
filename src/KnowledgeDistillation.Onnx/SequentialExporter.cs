using TorchSharp;
using TorchSharp.Modules;
using static KnowledgeDistillation.Onnx.OnnxGraph;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>Emits ONNX nodes for the layers of a <c>Sequential</c> (nested <c>Sequential</c>s included), in evaluation-mode semantics.</summary>
internal static class SequentialExporter
{
    /// <summary>The layers this exporter writes.</summary>
    public static readonly IReadOnlyList<string> Supported =
    [
        "Linear", "Conv2d", "BatchNorm2d", "LayerNorm", "Embedding", "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "MaxPool2d", "AvgPool2d",
        "AdaptiveAvgPool2d (to 1×1)", "Flatten", "Dropout", "Identity",
    ];

    /// <summary>Emits <paramref name="module"/> on value <paramref name="x"/>; the outputs of children named in <paramref name="taps"/> are recorded there.</summary>
    public static string Emit(OnnxGraph g, nn.Module module, string path, string x, Dictionary<string, string?>? taps = null)
    {
        string output = EmitOne(g, module, path, x, taps);
        if (taps is not null && taps.ContainsKey(path)) taps[path] = output;
        return output;
    }

    private static string EmitOne(OnnxGraph g, nn.Module module, string path, string x, Dictionary<string, string?>? taps)
    {
        string name = path.Length == 0 ? "model" : path;
        switch (module)
        {
            case Sequential sequential:
                foreach ((string child, nn.Module layer) in sequential.named_children()) x = Emit(g, layer, path.Length == 0 ? child : $"{path}.{child}", x, taps);
                return x;
            case Linear linear:
                x = g.Node("MatMul", name, [x, g.Weight(name + ".weight_t", linear.weight!.t())]);
                return linear.bias is null ? x : g.Node("Add", name, [x, g.Weight(name + ".bias", linear.bias)]);
            case Conv2d conv:
                if (conv.padding_type is not null || conv.padding_mode != PaddingModes.Zeros)
                {
                    throw Unsupported(module, path, "only explicit zero padding is exported (padding: a number or a pair, padding_mode: zeros)");
                }
                var convInputs = new List<string> { x, g.Weight(name + ".weight", conv.weight!) };
                if (conv.bias is not null) convInputs.Add(g.Weight(name + ".bias", conv.bias));
                return g.Node("Conv", name, convInputs, Ints("kernel_shape", conv.kernel_size), Ints("strides", conv.stride),
                    Ints("pads", [.. conv.padding!, .. conv.padding!]), Ints("dilations", conv.dilation), Int("group", conv.groups));
            case BatchNorm2d norm:
                if (norm.running_mean is null || norm.running_var is null) throw Unsupported(module, path, "a BatchNorm2d without running statistics has no evaluation-mode form");
                Tensor scale = norm.weight ?? ones(norm.num_features), shift = norm.bias ?? zeros(norm.num_features);
                return g.Node("BatchNormalization", name,
                    [x, g.Weight(name + ".weight", scale), g.Weight(name + ".bias", shift), g.Weight(name + ".running_mean", norm.running_mean), g.Weight(name + ".running_var", norm.running_var)],
                    Float("epsilon", (float)norm.eps));
            case LayerNorm layerNorm:
            {
                long[] shape = layerNorm.normalized_shape;
                Tensor weight = layerNorm.weight ?? ones(shape), bias = layerNorm.bias ?? zeros(shape);
                return g.Node("LayerNormalization", name, [x, g.Weight(name + ".weight", weight), g.Weight(name + ".bias", bias)],
                    Int("axis", -shape.Length), Float("epsilon", (float)layerNorm.eps));
            }
            case Embedding embedding:
                return g.Node("Gather", name, [g.Weight(name + ".weight", embedding.weight!), x], Int("axis", 0));
            case ReLU:
                return g.Node("Relu", name, [x]);
            case Tanh:
                return g.Node("Tanh", name, [x]);
            case Sigmoid:
                return g.Node("Sigmoid", name, [x]);
            case SiLU:
                return g.Node("Mul", name, [x, g.Node("Sigmoid", name + ".sigmoid", [x])]);
            case GELU gelu:
                return Gelu(g, name, x, gelu.approximate == GELU.Approximate.tanh);
            case MaxPool2d pool:
                if (pool.ceil_mode) throw Unsupported(module, path, "ceil_mode is not exported");
                return g.Node("MaxPool", name, [x], Ints("kernel_shape", pool.kernel_size), Ints("strides", pool.stride ?? pool.kernel_size),
                    Ints("pads", [.. pool.padding ?? [0, 0], .. pool.padding ?? [0, 0]]), Ints("dilations", pool.dilation ?? [1, 1]));
            case AvgPool2d average:
                if (average.ceil_mode || average.divisor_override is not null) throw Unsupported(module, path, "ceil_mode and divisor_override are not exported");
                return g.Node("AveragePool", name, [x], Ints("kernel_shape", average.kernel_size), Ints("strides", average.stride ?? average.kernel_size),
                    Ints("pads", [.. average.padding ?? [0, 0], .. average.padding ?? [0, 0]]), Int("count_include_pad", average.count_include_pad ? 1 : 0));
            case AdaptiveAvgPool2d adaptive:
                if (!adaptive.output_size.All(s => s == 1)) throw Unsupported(module, path, $"only an output size of 1×1 is exported (global average pooling); this one is [{string.Join(", ", adaptive.output_size)}]");
                return g.Node("GlobalAveragePool", name, [x]);
            case Flatten flatten:
                if (flatten.end_dim != -1) throw Unsupported(module, path, "only Flatten(start_dim, end_dim: -1) is exported");
                return g.Node("Flatten", name, [x], Int("axis", flatten.start_dim));
            case Dropout:
            case Identity:
                return x; // evaluation mode
            default:
                throw Unsupported(module, path, $"no ONNX form for {module.GetType().Name}; supported: {string.Join(", ", Supported)}");
        }
    }

    /// <summary>GELU from elementwise operators (ONNX's Gelu operator only exists from opset 20): exact 0.5·x·(1 + erf(x/√2)), or the tanh form.</summary>
    internal static string Gelu(OnnxGraph g, string name, string x, bool tanh)
    {
        string half = g.Node("Mul", name + ".half", [x, g.Scalar(name + ".c_half", 0.5f)]);
        string inner;
        if (!tanh)
        {
            inner = g.Node("Erf", name + ".erf", [g.Node("Div", name + ".scaled", [x, g.Scalar(name + ".c_sqrt2", MathF.Sqrt(2f))])]);
        }
        else
        {
            string cube = g.Node("Mul", name + ".cube", [g.Node("Mul", name + ".square", [x, x]), x]);
            string sum = g.Node("Add", name + ".sum", [x, g.Node("Mul", name + ".cubic", [cube, g.Scalar(name + ".c_0044715", 0.044715f)])]);
            inner = g.Node("Tanh", name + ".tanh", [g.Node("Mul", name + ".arg", [sum, g.Scalar(name + ".c_sqrt_2_pi", MathF.Sqrt(2f / MathF.PI))])]);
        }
        return g.Node("Mul", name, [half, g.Node("Add", name + ".one_plus", [inner, g.Scalar(name + ".c_one", 1f)])]);
    }

    private static NotSupportedException Unsupported(nn.Module module, string path, string why) =>
        new($"The module at \"{(path.Length == 0 ? "(root)" : path)}\" ({module.GetType().Name}) cannot be exported to ONNX: {why}.");
}
