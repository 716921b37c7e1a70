using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Reads an ONNX graph for import: its initializers and constant values as tensors, and who produces and who consumes
/// each value, so that an importer can name anonymous weights by the nodes around them.
/// </summary>
internal sealed class OnnxGraphReader
{
    private readonly Dictionary<string, TensorProto> _initializers;
    private readonly Dictionary<string, NodeProto> _producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<NodeProto>> _consumers = new(StringComparer.Ordinal);

    private OnnxGraphReader(string source, ModelProto model)
    {
        Source = source;
        Model = model;
        _initializers = model.Graph.Initializer.GroupBy(t => t.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        foreach (NodeProto node in model.Graph.Node)
        {
            foreach (string output in node.Output) _producers[output] = node;
            foreach (string input in node.Input.Where(i => i.Length > 0))
            {
                if (!_consumers.TryGetValue(input, out List<NodeProto>? list)) _consumers[input] = list = [];
                list.Add(node);
            }
        }
    }

    /// <summary>Parses the ONNX file at <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not an ONNX model (the message names it).</exception>
    public static OnnxGraphReader Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"No ONNX model at {path}.", path);
        using FileStream stream = File.OpenRead(path);
        return Open(stream, path);
    }

    /// <summary>Parses an ONNX model from <paramref name="stream"/>; <paramref name="source"/> names it in messages.</summary>
    public static OnnxGraphReader Open(Stream stream, string source)
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(stream);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"{source} is not an ONNX model: {e.Message}", e);
        }
        if (model.Graph is null || model.Graph.Node.Count == 0) throw new InvalidDataException($"{source} is not an ONNX model: it has no graph nodes.");
        return new OnnxGraphReader(source, model);
    }

    /// <summary>The file or stream the model came from, for messages.</summary>
    public string Source { get; }

    public ModelProto Model { get; }

    public IEnumerable<NodeProto> Nodes => Model.Graph.Node;

    public IEnumerable<string> InitializerNames => _initializers.Keys;

    public bool IsInitializer(string name) => _initializers.ContainsKey(name);

    public TensorProto Initializer(string name) => _initializers[name];

    public NodeProto? Producer(string value) => _producers.GetValueOrDefault(value);

    public IReadOnlyList<NodeProto> Consumers(string value) => _consumers.TryGetValue(value, out List<NodeProto>? list) ? list : [];

    /// <summary>The value of an initializer or of a <c>Constant</c> node's output; null when <paramref name="value"/> is computed.</summary>
    public TensorProto? ConstantValue(string value)
    {
        if (_initializers.TryGetValue(value, out TensorProto? t)) return t;
        NodeProto? node = Producer(value);
        return node is { OpType: "Constant" } ? node.Attribute.FirstOrDefault(a => a.Name == "value")?.T : null;
    }

    /// <summary>A constant's single number (any numeric type), or null when <paramref name="value"/> is not a one-element constant.</summary>
    public double? Scalar(string value)
    {
        TensorProto? t = ConstantValue(value);
        if (t is null || t.Dims.Aggregate(1L, (a, b) => a * b) != 1) return null;
        return t.DataType switch
        {
            (int)TensorProto.Types.DataType.Float => t.RawData.Length == 4 ? BitConverter.ToSingle(t.RawData.Span) : t.FloatData.Count == 1 ? t.FloatData[0] : null,
            (int)TensorProto.Types.DataType.Double => t.RawData.Length == 8 ? BitConverter.ToDouble(t.RawData.Span) : t.DoubleData.Count == 1 ? t.DoubleData[0] : null,
            (int)TensorProto.Types.DataType.Int64 => t.RawData.Length == 8 ? BitConverter.ToInt64(t.RawData.Span) : t.Int64Data.Count == 1 ? t.Int64Data[0] : null,
            (int)TensorProto.Types.DataType.Int32 => t.RawData.Length == 4 ? BitConverter.ToInt32(t.RawData.Span) : t.Int32Data.Count == 1 ? t.Int32Data[0] : null,
            _ => null,
        };
    }

    /// <summary>A float32 initializer as a TorchSharp tensor of its shape (little-endian raw data or the typed field).</summary>
    /// <exception cref="InvalidDataException">The initializer is not float32, or its data lies in an external file.</exception>
    public Tensor FloatTensor(string name)
    {
        TensorProto t = _initializers[name];
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
        {
            throw new InvalidDataException($"{Source}: the initializer \"{name}\" keeps its data in an external file; import reads models whose weights are inside the .onnx file.");
        }
        if (t.DataType != (int)TensorProto.Types.DataType.Float)
        {
            throw new InvalidDataException($"{Source}: the initializer \"{name}\" is {(TensorProto.Types.DataType)t.DataType}; import reads float32 weights.");
        }
        long[] shape = [.. t.Dims];
        long count = shape.Aggregate(1L, (a, b) => a * b);
        float[] data = t.RawData.Length > 0 ? new float[count] : [.. t.FloatData];
        if (t.RawData.Length > 0)
        {
            if (t.RawData.Length != count * sizeof(float)) throw new InvalidDataException($"{Source}: the initializer \"{name}\" has {t.RawData.Length} bytes for shape [{string.Join(", ", shape)}].");
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).CopyTo(data);
        }
        if (data.Length != count) throw new InvalidDataException($"{Source}: the initializer \"{name}\" has {data.Length} values for shape [{string.Join(", ", shape)}].");
        return tensor(data, shape);
    }

    /// <summary>An integer attribute of <paramref name="node"/>, or <paramref name="fallback"/>.</summary>
    public static long IntAttribute(NodeProto node, string name, long fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;
}
