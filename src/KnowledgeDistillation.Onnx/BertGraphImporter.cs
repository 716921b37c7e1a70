using System.Globalization;
using System.Text.RegularExpressions;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Transformers;
using Onnx;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Turns a Hugging Face BERT encoder exported to ONNX (torch.onnx / optimum, unfused operators) into a
/// <see cref="BertModel"/>: the graph's initializers become a state dict in Hugging Face's names, the configuration is
/// read from the weights' shapes and the graph's constants, and the weights load through the same all-or-nothing
/// mapping as a checkpoint folder.
/// </summary>
/// <remarks>
/// torch.onnx keeps the names of biases, layer norms and embeddings, but a linear layer's weight feeds a MatMul as an
/// anonymous, transposed <c>[in, out]</c> initializer ("onnx::MatMul_788", or "927" from older exporters). Such a
/// weight is named by the bias its MatMul's output is added to (<c>….query.bias</c> → <c>….query.weight</c>), else by the
/// module path in the node's name (<c>/encoder/layer.0/attention/self/query/MatMul</c>), and transposed back.
/// </remarks>
internal static partial class BertGraphImporter
{
    private const string WordEmbeddings = "embeddings.word_embeddings.weight";

    public static OnnxImportedModel<BertModel> Import(OnnxGraphReader graph, OnnxBertImportOptions options, string? tokenizerFolder)
    {
        RefuseFusedOperators(graph);
        (Dictionary<string, Tensor> weights, List<string> unnamed) = NamedWeights(graph);
        try
        {
            string prefix = weights.ContainsKey(WordEmbeddings) ? "" : weights.ContainsKey("bert." + WordEmbeddings) ? "bert." : throw NotBert(graph, weights, $"no {WordEmbeddings} initializer");
            if (unnamed.Count > 0)
            {
                throw new InvalidDataException($"{graph.Source}: {unnamed.Count} matrix weight(s) could not be named by a following bias or a module path in their MatMul node's name: " +
                    $"{string.Join(", ", unnamed.Take(8))}{(unnamed.Count > 8 ? ", …" : "")}.");
            }
            var notes = new List<string>();
            BertConfig config = ReadConfig(graph, weights, prefix, options, notes);
            if (tokenizerFolder is not null) VocabularyCheck.Against(tokenizerFolder, config.VocabSize, graph.Source, notes);
            var model = new BertModel(config);
            try
            {
                model.eval();
                WeightLoadReport report;
                try
                {
                    report = PretrainedFolder.LoadWeights(model, weights);
                }
                catch (InvalidDataException e)
                {
                    throw new InvalidDataException($"{graph.Source}: the graph's weights do not make a BERT encoder: {e.Message}", e);
                }
                return new OnnxImportedModel<BertModel>(model, report with { Notes = [.. report.Notes, .. notes] });
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (Tensor t in weights.Values) t.Dispose();
        }
    }

    /// <summary>ONNX Runtime's transformer optimiser fuses BERT into operators whose weights no longer have BERT's layout.</summary>
    private static void RefuseFusedOperators(OnnxGraphReader graph)
    {
        string[] fused = graph.Nodes.Where(n => n.Domain == "com.microsoft").Select(n => n.OpType).Distinct().ToArray();
        if (fused.Length > 0)
        {
            throw new InvalidDataException($"{graph.Source} has ONNX Runtime's fused operators ({string.Join(", ", fused)}): it was optimised after export. " +
                "Import the plain export (torch.onnx or optimum without optimisation); the fused operators' weights no longer have BERT's layout.");
        }
    }

    /// <summary>Every float32 weight of the graph, in Hugging Face's names, in PyTorch's layouts; and the matrix weights that could not be named.</summary>
    private static (Dictionary<string, Tensor> Weights, List<string> Unnamed) NamedWeights(OnnxGraphReader graph)
    {
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var unnamed = new List<string>();
        try
        {
            foreach (string name in graph.InitializerNames)
            {
                if (graph.Initializer(name).DataType != (int)TensorProto.Types.DataType.Float) continue;
                (string? hfName, bool transposed, bool isMatrix) = NameOf(graph, name);
                if (hfName is null)
                {
                    if (isMatrix) unnamed.Add(name);
                    continue;
                }
                Tensor t = graph.FloatTensor(name);
                if (weights.ContainsKey(hfName)) throw new InvalidDataException($"{graph.Source}: two initializers map to {hfName} (one of them is \"{name}\").");
                weights[hfName] = transposed ? t.t().contiguous() : t;
                if (transposed) t.Dispose();
            }
            return (weights, unnamed);
        }
        catch
        {
            foreach (Tensor t in weights.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>The Hugging Face name of one initializer, whether it is stored transposed, and whether it is a MatMul/Gemm weight; null for one that is not a named module weight.</summary>
    private static (string? Name, bool Transposed, bool IsMatrix) NameOf(OnnxGraphReader graph, string initializer)
    {
        NodeProto? matrixUse = graph.Consumers(initializer).FirstOrDefault(n =>
            (n.OpType == "MatMul" && n.Input.Count == 2 && n.Input[1] == initializer) || (n.OpType == "Gemm" && n.Input.Count >= 2 && n.Input[1] == initializer));
        bool transposed = matrixUse is not null && !(matrixUse.OpType == "Gemm" && OnnxGraphReader.IntAttribute(matrixUse, "transB", 0) == 1);
        if (IsModuleName(initializer)) return (initializer, transposed, matrixUse is not null);
        if (matrixUse is null) return (null, false, false);
        // The bias added to the product names the layer.
        string? bias = matrixUse.OpType == "Gemm" && matrixUse.Input.Count == 3 ? matrixUse.Input[2]
            : graph.Consumers(matrixUse.Output[0]).Where(n => n.OpType == "Add").SelectMany(n => n.Input).FirstOrDefault(i => i != matrixUse.Output[0] && graph.IsInitializer(i));
        if (bias is not null && IsModuleName(bias) && bias.EndsWith(".bias", StringComparison.Ordinal)) return (bias[..^".bias".Length] + ".weight", transposed, true);
        // torch.onnx ≥ 1.13 names nodes by module path: "/encoder/layer.0/attention/self/query/MatMul".
        Match path = ModulePath().Match(matrixUse.Name);
        return (path.Success ? path.Groups["path"].Value.Replace('/', '.') + ".weight" : null, transposed, true);
    }

    private static bool IsModuleName(string name) =>
        (name.EndsWith(".weight", StringComparison.Ordinal) || name.EndsWith(".bias", StringComparison.Ordinal)) && !name.StartsWith("onnx::", StringComparison.Ordinal);

    [GeneratedRegex(@"^/(?<path>[A-Za-z0-9_.]+(/[A-Za-z0-9_.]+)*)/(MatMul|Gemm)(_\d+)?$")]
    private static partial Regex ModulePath();

    [GeneratedRegex(@"^encoder\.layer\.(?<i>\d+)\.")]
    private static partial Regex LayerIndex();

    private static BertConfig ReadConfig(OnnxGraphReader graph, Dictionary<string, Tensor> weights, string prefix, OnnxBertImportOptions options, List<string> notes)
    {
        Tensor Weight(string name) => weights.TryGetValue(prefix + name, out Tensor? t) ? t : throw NotBert(graph, weights, $"no {prefix}{name} initializer");
        long[] words = Weight(WordEmbeddings).shape;
        int width = (int)words[1];
        int[] layerIndices = weights.Keys.Select(k => LayerIndex().Match(k[prefix.Length..])).Where(m => m.Success)
            .Select(m => int.Parse(m.Groups["i"].Value, CultureInfo.InvariantCulture)).Distinct().Order().ToArray();
        if (layerIndices.Length == 0) throw NotBert(graph, weights, "no encoder.layer.{i}.… weights");
        if (layerIndices[^1] != layerIndices.Length - 1)
        {
            throw new InvalidDataException($"{graph.Source}: the encoder's layers are numbered {string.Join(", ", layerIndices)}; expected 0 … {layerIndices.Length - 1}.");
        }
        int heads = options.Heads ?? Heads(graph, width);
        if (width % heads != 0) throw new InvalidDataException($"{graph.Source}: width {width} is not divisible by {heads} heads.");
        double epsilon = LayerNormEpsilon(graph, notes);
        FeedForwardActivation activation = Activation(graph);
        bool pooler = weights.ContainsKey(prefix + "pooler.dense.weight");
        notes.Add($"Read from the ONNX graph: {layerIndices.Length} layers, width {width}, {heads} heads, layer norm ε {epsilon.ToString("R", CultureInfo.InvariantCulture)}, activation {activation}{(pooler ? ", with the pooler" : "")}.");
        return new BertConfig
        {
            VocabSize = (int)words[0],
            Width = width,
            Layers = layerIndices.Length,
            Heads = heads,
            FeedForwardWidth = (int)Weight("encoder.layer.0.intermediate.dense.bias").shape[0],
            ContextLength = (int)Weight("embeddings.position_embeddings.weight").shape[0],
            TypeVocabSize = (int)Weight("embeddings.token_type_embeddings.weight").shape[0],
            LayerNormEpsilon = epsilon,
            Activation = activation,
            Head = BertHead.None,
            UsePooler = pooler,
            Dropout = 0,
        };
    }

    /// <summary>
    /// The head count from the graph: the head split's reshape (<c>[batch, sequence, heads, head width]</c>, its last two
    /// entries constants whose product is the width), checked against the attention's 1/√(head width) scale when present.
    /// </summary>
    private static int Heads(OnnxGraphReader graph, int width)
    {
        var fromShapes = new HashSet<int>();
        foreach (NodeProto reshape in graph.Nodes.Where(n => n.OpType == "Reshape" && n.Input.Count == 2))
        {
            long?[] shape = ShapeEntries(graph, reshape.Input[1]);
            if (shape.Length == 4 && shape[2] is long h && shape[3] is long d && h > 0 && h * d == width) fromShapes.Add((int)h);
        }
        var fromScales = new HashSet<int>();
        foreach (NodeProto softmax in graph.Nodes.Where(n => n.OpType == "Softmax"))
        {
            // scores = QKᵀ / √d (+ mask) → Softmax: look through the mask's Add for the Div or Mul by a constant.
            NodeProto? node = graph.Producer(softmax.Input[0]);
            if (node?.OpType == "Add") node = node.Input.Select(graph.Producer).FirstOrDefault(p => p?.OpType is "Div" or "Mul");
            if (node is null || node.OpType is not ("Div" or "Mul") || graph.Scalar(node.Input[1]) is not double c || c <= 0) continue;
            double headWidth = node.OpType == "Div" ? c * c : 1 / (c * c);
            int rounded = (int)Math.Round(headWidth);
            if (Math.Abs(headWidth - rounded) < 1e-3 * rounded && rounded > 0 && width % rounded == 0) fromScales.Add(width / rounded);
        }
        if (fromShapes.Count == 1 && (fromScales.Count == 0 || fromScales.SetEquals(fromShapes))) return fromShapes.Single();
        if (fromShapes.Count == 0 && fromScales.Count == 1) return fromScales.Single();
        throw new InvalidDataException($"{graph.Source}: the number of attention heads could not be read from the graph " +
            $"(head splits suggest {Describe(fromShapes)}, attention scales suggest {Describe(fromScales)}); pass {nameof(OnnxBertImportOptions)}.{nameof(OnnxBertImportOptions.Heads)}.");
    }

    private static string Describe(HashSet<int> values) => values.Count == 0 ? "nothing" : string.Join(" or ", values.Order());

    /// <summary>The entries of a shape value: a constant tensor, or a Concat of one-element constants and computed parts (null).</summary>
    private static long?[] ShapeEntries(OnnxGraphReader graph, string value)
    {
        if (graph.ConstantValue(value) is { } constant)
        {
            if (constant.DataType != (int)TensorProto.Types.DataType.Int64) return [];
            return constant.RawData.Length > 0
                ? [.. System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(constant.RawData.Span).ToArray().Select(v => (long?)v)]
                : [.. constant.Int64Data.Select(v => (long?)v)];
        }
        NodeProto? concat = graph.Producer(value);
        if (concat?.OpType != "Concat") return [];
        return [.. concat.Input.Select(i => graph.Scalar(i) is double d ? (long?)(long)d : null)];
    }

    /// <summary>ε from a LayerNormalization node, or from the decomposed form's <c>Sqrt(variance + ε)</c>.</summary>
    private static double LayerNormEpsilon(OnnxGraphReader graph, List<string> notes)
    {
        foreach (NodeProto node in graph.Nodes)
        {
            if (node.OpType == "LayerNormalization")
            {
                return node.Attribute.FirstOrDefault(a => a.Name == "epsilon") is { } a ? Math.Round(a.F, 15) : 1e-5;
            }
            if (node.OpType == "Sqrt" && graph.Producer(node.Input[0]) is { OpType: "Add" } add && add.Input.Select(graph.Scalar).FirstOrDefault(v => v is not null) is double eps)
            {
                // The graph stores ε in float32; BERT's 1e-12 is read back as 9.9999999600419720025e-13.
                return double.Parse(((float)eps).ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
            }
        }
        notes.Add("The graph shows no layer norm ε; BERT's 1e-12 was assumed.");
        return 1e-12;
    }

    /// <summary>The feed-forward activation: the exact GELU (Erf), the tanh approximation, or a fused Gelu node.</summary>
    private static FeedForwardActivation Activation(OnnxGraphReader graph)
    {
        NodeProto[] nodes = [.. graph.Nodes];
        if (nodes.Any(n => n.OpType == "Erf")) return FeedForwardActivation.Gelu;
        if (nodes.FirstOrDefault(n => n.OpType == "Gelu") is { } gelu)
        {
            string approximate = gelu.Attribute.FirstOrDefault(a => a.Name == "approximate")?.S.ToStringUtf8() ?? "none";
            return approximate == "tanh" ? FeedForwardActivation.GeluTanh : FeedForwardActivation.Gelu;
        }
        // GELU's tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))); the pooler's single Tanh is not it.
        if (nodes.Count(n => n.OpType == "Tanh") > 1 && nodes.Any(n => n.OpType == "Pow" && graph.Scalar(n.Input[1]) == 3)) return FeedForwardActivation.GeluTanh;
        string[] others = [.. nodes.Select(n => n.OpType).Where(op => op is "Relu" or "Sigmoid" or "HardSigmoid").Distinct()];
        throw new InvalidDataException($"{graph.Source}: the feed-forward activation is not GELU (no Erf, Gelu or GELU-tanh pattern{(others.Length > 0 ? "; found " + string.Join(", ", others) : "")}); BertModel supports GELU and its tanh form.");
    }

    private static InvalidDataException NotBert(OnnxGraphReader graph, Dictionary<string, Tensor> weights, string what) =>
        new($"{graph.Source} is not a BERT encoder export: {what}. Its named weights begin: {string.Join(", ", weights.Keys.Order(StringComparer.Ordinal).Take(6))}{(weights.Count > 6 ? ", …" : "")}.");
}
