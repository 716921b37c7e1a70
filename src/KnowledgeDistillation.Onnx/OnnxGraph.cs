using Google.Protobuf;
using Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Builds one ONNX graph: weights as initializers, nodes with fresh value names, typed inputs and outputs. The graph's
/// input and output names are reserved when it is created, so no internal value (a layer that happens to be called
/// "output", say) can take a name the caller asked for.
/// </summary>
internal sealed class OnnxGraph
{
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly HashSet<string> _reserved;

    /// <summary>Starts a graph whose inputs and outputs will carry exactly <paramref name="interfaceNames"/>, for operator set <paramref name="opset"/>.</summary>
    public OnnxGraph(IEnumerable<string> interfaceNames, int opset)
    {
        Opset = opset;
        _reserved = new HashSet<string>(StringComparer.Ordinal);
        foreach (string name in interfaceNames)
        {
            if (!_reserved.Add(name)) throw new ArgumentException($"The graph's inputs and outputs must have distinct names; \"{name}\" is used twice.", nameof(interfaceNames));
        }
    }

    public GraphProto Graph { get; } = new() { Name = "graph" };

    /// <summary>The operator set the graph is written for: emitters choose an operator's form by it.</summary>
    public int Opset { get; }

    /// <summary>A value name not used yet and not reserved for an input or output, derived from <paramref name="hint"/>.</summary>
    public string Fresh(string hint)
    {
        string name = hint;
        for (int i = 1; _reserved.Contains(name) || !_names.Add(name); i++) name = $"{hint}_{i}";
        return name;
    }

    /// <summary>Declares the graph input <paramref name="name"/> (a reserved name) and returns it.</summary>
    public string Input(string name, TensorProto.Types.DataType type, long[] shape, string[] dimensionNames)
    {
        Claim(name);
        Graph.Input.Add(Value(name, type, shape, dimensionNames));
        return name;
    }

    /// <summary>Makes <paramref name="value"/> the float32 graph output <paramref name="name"/> (a reserved name).</summary>
    public void Output(string value, string name)
    {
        Claim(name);
        Graph.Node.Add(new NodeProto { OpType = "Identity", Name = Fresh("node_" + name), Input = { value }, Output = { name } });
        Graph.Output.Add(Value(name, TensorProto.Types.DataType.Float, null, []));
    }

    private void Claim(string name)
    {
        if (!_reserved.Contains(name)) throw new InvalidOperationException($"\"{name}\" was not reserved as an input or output of this graph.");
        if (!_names.Add(name)) throw new InvalidOperationException($"\"{name}\" is already an input or output of this graph.");
    }

    /// <summary>Adds <paramref name="tensor"/> (copied to the CPU) as an initializer and returns its name.</summary>
    public string Weight(string hint, Tensor tensor)
    {
        using var scope = NewDisposeScope();
        Tensor t = tensor.detach().cpu().contiguous();
        TensorProto.Types.DataType type = t.dtype switch
        {
            ScalarType.Float32 => TensorProto.Types.DataType.Float,
            ScalarType.Int64 => TensorProto.Types.DataType.Int64,
            ScalarType.Float64 => TensorProto.Types.DataType.Double,
            _ => throw new NotSupportedException($"Weight {hint} has dtype {t.dtype}; the exporter writes float32, float64 and int64 tensors."),
        };
        string name = Fresh(hint);
        var proto = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(t.bytes) };
        proto.Dims.AddRange(t.shape);
        Graph.Initializer.Add(proto);
        return name;
    }

    /// <summary>An int64 constant vector (shapes, axes).</summary>
    public string Longs(string hint, params long[] values) => Weight(hint, tensor(values, dtype: ScalarType.Int64));

    /// <summary>A float32 scalar constant.</summary>
    public string Scalar(string hint, float value) => Weight(hint, tensor(value));

    /// <summary>Adds a node and returns its (single) output's name.</summary>
    public string Node(string op, string outputHint, IEnumerable<string> inputs, params AttributeProto[] attributes)
    {
        string output = Fresh(outputHint);
        var node = new NodeProto { OpType = op, Name = Fresh("node_" + outputHint) };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
        return output;
    }

    public static AttributeProto Ints(string name, IEnumerable<long> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>A graph input or output of float32 (or int64) elements; negative dimensions become named symbolic ones.</summary>
    public static ValueInfoProto Value(string name, TensorProto.Types.DataType type, long[]? shape, string[] dimensionNames)
    {
        var tensorType = new TypeProto.Types.Tensor { ElemType = (int)type };
        if (shape is not null)
        {
            var shapeProto = new TensorShapeProto();
            for (int i = 0; i < shape.Length; i++)
            {
                shapeProto.Dim.Add(shape[i] >= 0
                    ? new TensorShapeProto.Types.Dimension { DimValue = shape[i] }
                    : new TensorShapeProto.Types.Dimension { DimParam = dimensionNames[i] });
            }
            tensorType.Shape = shapeProto;
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }
}
