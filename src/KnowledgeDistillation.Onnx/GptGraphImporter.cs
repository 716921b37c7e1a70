using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Transformers;
using Onnx;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Reads back a <see cref="GptModel"/> that <see cref="OnnxExport"/> wrote: its initializers carry the model's own
/// parameter names (matrices transposed, under a <c>_t</c> suffix), so the weights map one to one; the configuration
/// comes from the weight shapes, the stored head split, the layer norms' ε, the activation's operators and where the
/// first norm sits.
/// </summary>
internal static class GptGraphImporter
{
    private const string TokenEmbedding = "token_embedding.weight";
    private const string HeadShape = "head_shape";

    public static OnnxImportedModel<GptModel> Import(OnnxGraphReader graph)
    {
        string[] names = [.. graph.InitializerNames];
        string[] named = [.. names.Where(n => n.Contains('.', StringComparison.Ordinal)).Order(StringComparer.Ordinal)];
        if (!graph.IsInitializer(TokenEmbedding) || !graph.IsInitializer("position_embedding.weight") || !graph.IsInitializer(HeadShape))
        {
            throw new InvalidDataException($"{graph.Source} is not a GptModel exported by this library: it lacks {TokenEmbedding}, position_embedding.weight or {HeadShape}. " +
                $"Its named weights begin: {string.Join(", ", named.Take(6))}{(named.Length > 6 ? ", …" : "")}. " +
                "A BERT encoder export is read by OnnxImport.Bert; other decoders are used through OnnxTeacher.");
        }
        var notes = new List<string>();
        GptConfig config = ReadConfig(graph, names, notes);
        return OwnExportWeights.Load(graph, new GptModel(config), config.TieEmbeddings, notes);
    }

    private static GptConfig ReadConfig(OnnxGraphReader graph, string[] names, List<string> notes)
    {
        long[] Shape(string name) => [.. graph.Initializer(name).Dims];
        long[] embedding = Shape(TokenEmbedding), positions = Shape("position_embedding.weight");
        int layers = OwnExportWeights.Layers(names);
        if (layers == 0) throw new InvalidDataException($"{graph.Source}: no blocks.N weights; not a GptModel export.");
        long[] split = OwnExportWeights.Longs(graph, HeadShape);
        if (split.Length != 5) throw new InvalidDataException($"{graph.Source}: {HeadShape} is [{string.Join(", ", split)}]; a GptModel export stores [0, 0, 3, heads, head width].");

        // The first layer norm tells the placement: pre-norm normalises the embeddings themselves, post-norm the first residual sum.
        NodeProto firstNorm = graph.Nodes.First(n => n.OpType == "LayerNormalization");
        bool pre = graph.Producer(firstNorm.Input[0]) is { } producer && producer.Input.All(i => graph.Producer(i)?.OpType == "Gather");
        float epsilon = firstNorm.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
        NodeProto[] nodes = [.. graph.Nodes];
        FeedForwardActivation activation = nodes.Any(n => n.OpType == "Erf") ? FeedForwardActivation.Gelu
            : nodes.Any(n => n.OpType == "Tanh") ? FeedForwardActivation.GeluTanh
            : nodes.Any(n => n.OpType == "Sigmoid") ? FeedForwardActivation.Silu
            : throw new InvalidDataException($"{graph.Source}: no GELU (Erf or Tanh) or SiLU (Sigmoid) operators; not a GptModel export.");
        bool tied = OwnExportWeights.TiedHead(graph);
        var config = new GptConfig
        {
            VocabSize = (int)embedding[0], ContextLength = (int)positions[0], Width = (int)embedding[1], Layers = layers, Heads = (int)split[3],
            FeedForwardWidth = (int)Shape("blocks.0.feed_forward.expand.weight_t")[1], Activation = activation,
            NormPlacement = pre ? NormPlacement.Pre : NormPlacement.Post, LayerNormEpsilon = OwnExportWeights.Float32(epsilon),
            TieEmbeddings = tied,
        };
        notes.Add($"Read from the ONNX graph: {layers} layers, width {config.Width}, {config.Heads} heads, feed-forward {config.FeedForwardWidth}, {config.NormPlacement}-norm, " +
            $"layer norm ε {config.LayerNormEpsilon.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}, activation {activation}, {(tied ? "head tied to the token embedding" : "separate head")}. " +
            "Dropout and the hidden-state convention are not in the graph: the GptConfig defaults were used.");
        return config;
    }
}
