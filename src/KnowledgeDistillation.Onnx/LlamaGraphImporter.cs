using System.Globalization;
using KnowledgeDistillation.Transformers;
using Onnx;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Reads back a <see cref="LlamaModel"/> (Llama, Qwen2, Mistral layouts) that <see cref="OnnxExport"/> wrote. The
/// weights map by name as for GPT; the configuration comes from the graph: widths from the shapes, query and key/value
/// heads from their stored reshapes, the head width and context from the rotary tables, the rotary base from their
/// angles (checked by recomputing the tables), the sliding window from the stored mask, RMS-norm ε, biases, activation.
/// </summary>
internal static class LlamaGraphImporter
{
    private const string Cos = "rope_cos_full";

    public static OnnxImportedModel<LlamaModel> Import(OnnxGraphReader graph)
    {
        string[] names = [.. graph.InitializerNames];
        if (!graph.IsInitializer("token_embedding.weight") || !graph.IsInitializer(Cos) || !graph.IsInitializer("blocks.0.query_shape"))
        {
            string[] named = [.. names.Where(n => n.Contains('.', StringComparison.Ordinal)).Order(StringComparer.Ordinal)];
            throw new InvalidDataException($"{graph.Source} is not a LlamaModel exported by this library: it lacks token_embedding.weight, {Cos} or blocks.0.query_shape. " +
                $"Its named weights begin: {string.Join(", ", named.Take(6))}{(named.Length > 6 ? ", …" : "")}.");
        }
        var notes = new List<string>();
        LlamaConfig config = ReadConfig(graph, names, notes);
        return OwnExportWeights.Load(graph, new LlamaModel(config), config.TieEmbeddings, notes);
    }

    private static LlamaConfig ReadConfig(OnnxGraphReader graph, string[] names, List<string> notes)
    {
        long[] Shape(string name) => [.. graph.Initializer(name).Dims];
        long[] embedding = Shape("token_embedding.weight"), table = Shape(Cos);
        int context = (int)table[0], headWidth = (int)table[1];
        int heads = (int)OwnExportWeights.Longs(graph, "blocks.0.query_shape")[2], kvHeads = (int)OwnExportWeights.Longs(graph, "blocks.0.key_shape")[2];
        double epsilon = OwnExportWeights.Float32(graph.Scalar("blocks.0.attention_norm.eps") ?? throw new InvalidDataException($"{graph.Source}: no blocks.0.attention_norm.eps; not a LlamaModel export."));
        NodeProto[] nodes = [.. graph.Nodes];
        FeedForwardActivation activation = nodes.Any(n => n.OpType == "Sigmoid") ? FeedForwardActivation.Silu
            : nodes.Any(n => n.OpType == "Erf") ? FeedForwardActivation.Gelu
            : nodes.Any(n => n.OpType == "Tanh") ? FeedForwardActivation.GeluTanh
            : throw new InvalidDataException($"{graph.Source}: no SiLU (Sigmoid) or GELU (Erf, Tanh) operators; not a LlamaModel export.");
        bool qkvBias = graph.IsInitializer("blocks.0.attention.query.bias");
        int? window = SlidingWindow(graph, context);
        double theta = RopeTheta(graph, context, headWidth, notes);
        DecoderFamily family = qkvBias ? DecoderFamily.Qwen2 : window is not null ? DecoderFamily.Mistral : DecoderFamily.Llama;
        var config = new LlamaConfig
        {
            VocabSize = (int)embedding[0], ContextLength = context, Width = (int)embedding[1], Layers = OwnExportWeights.Layers(names), Heads = heads,
            KeyValueHeads = kvHeads, HeadWidth = headWidth, FeedForwardWidth = (int)Shape("blocks.0.feed_forward.gate.weight_t")[1], RopeTheta = theta,
            QueryKeyValueBias = qkvBias, OutputBias = graph.IsInitializer("blocks.0.attention.output.bias"), FeedForwardBias = graph.IsInitializer("blocks.0.feed_forward.gate.bias"),
            TieEmbeddings = OwnExportWeights.TiedHead(graph), SlidingWindow = window, LayerNormEpsilon = epsilon, Activation = activation, Family = family,
        };
        notes.Add($"Read from the ONNX graph: {config.Layers} layers, width {config.Width}, {heads} query and {kvHeads} key/value heads of width {headWidth}, " +
            $"feed-forward {config.FeedForwardWidth}, context {context}, rotary base {theta.ToString("R", CultureInfo.InvariantCulture)}, " +
            $"{(window is int w ? $"sliding window {w}" : "no sliding window")}, RMS-norm ε {epsilon.ToString("R", CultureInfo.InvariantCulture)}, {activation}, " +
            $"{(config.TieEmbeddings ? "tied head" : "separate head")}. Family {family} was inferred from the biases and window (the graph does not record it); " +
            "dropout and the hidden-state convention are the LlamaConfig defaults.");
        return config;
    }

    /// <summary>The window from the stored causal mask's last row: how many positions it may attend (null when all of them).</summary>
    private static int? SlidingWindow(OnnxGraphReader graph, int context)
    {
        using Tensor mask = graph.FloatTensor("causal_mask_full");
        using Tensor lastRow = mask[context - 1];
        using Tensor allowed = lastRow.eq(0f);
        using Tensor count = allowed.sum();
        int attended = (int)count.item<long>();
        return attended == context ? null : attended;
    }

    /// <summary>
    /// The rotary base θ from the stored angles: position 1 turns frequency k by θ^(−2k/d). It is read at the lowest
    /// frequency, rounded to 6 significant digits, and accepted only if the model's own table computation with it
    /// reproduces the stored table.
    /// </summary>
    private static double RopeTheta(OnnxGraphReader graph, int context, int headWidth, List<string> notes)
    {
        if (headWidth < 4 || context < 2)
        {
            notes.Add("The rotary tables are too small to read the base from; 10000 was assumed.");
            return 10_000;
        }
        using var scope = NewDisposeScope();
        Tensor cos = graph.FloatTensor(Cos), sin = graph.FloatTensor("rope_sin_full");
        // The lowest frequency: its angle's float32 error is amplified least (by d / 2k ≈ 1) on the way back to θ.
        int k = headWidth / 2 - 1;
        double angle = Math.Atan2(sin[1, k].item<float>(), cos[1, k].item<float>());
        double theta = Math.Pow(angle, -headWidth / (2.0 * k));
        theta = double.Parse(theta.ToString("G6", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

        // The exporter's (and RotaryEmbedding's) float32 computation, compared with the stored table.
        Tensor exponents = arange(0, headWidth, 2, dtype: ScalarType.Int64).to(ScalarType.Float32).div(headWidth);
        Tensor inverse = full_like(exponents, theta).pow(exponents).reciprocal();
        Tensor angles = arange(context, dtype: ScalarType.Int64).to(ScalarType.Float32).unsqueeze(-1) * inverse;
        double difference = (cat([angles, angles], -1).cos() - cos).abs().max().item<float>();
        if (difference > 1e-5)
        {
            throw new InvalidDataException($"{graph.Source}: the rotary tables do not follow θ^(−2k/d) for any base this import could read (θ ≈ {theta}, max difference {difference:E2}).");
        }
        return theta;
    }
}
