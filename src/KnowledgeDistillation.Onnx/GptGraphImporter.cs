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
        var model = new GptModel(config);
        try
        {
            model.eval();
            var loaded = new List<string>();
            var used = new HashSet<string>(StringComparer.Ordinal);
            using (no_grad())
            {
                foreach ((string name, Tensor target) in model.state_dict())
                {
                    string? source = graph.IsInitializer(name) ? name : graph.IsInitializer(name + "_t") ? name + "_t" : null;
                    if (source is null && name == "lm_head.weight") source = "lm_head.weight_t";
                    if (source is null) throw new InvalidDataException($"{graph.Source}: no initializer holds the model's \"{name}\" (nor \"{name}_t\"); the file is not a complete GptModel export.");
                    using Tensor value = graph.FloatTensor(source);
                    using Tensor oriented = source.EndsWith("_t", StringComparison.Ordinal) ? value.t() : value.alias();
                    if (!oriented.shape.SequenceEqual(target.shape))
                    {
                        throw new InvalidDataException($"{graph.Source}: \"{source}\" is [{string.Join(", ", oriented.shape)}] where the model's \"{name}\" is [{string.Join(", ", target.shape)}].");
                    }
                    target.copy_(oriented);
                    loaded.Add(name);
                    used.Add(source);
                }
            }
            if (config.TieEmbeddings) used.Add("lm_head.weight_t");
            string[] unusedWeights = [.. names.Where(n => (n.EndsWith(".weight", StringComparison.Ordinal) || n.EndsWith(".weight_t", StringComparison.Ordinal) || n.EndsWith(".bias", StringComparison.Ordinal)) && !used.Contains(n))];
            return new OnnxImportedModel<GptModel>(model, new WeightLoadReport(loaded, unusedWeights, [.. names.Where(n => !used.Contains(n) && !unusedWeights.Contains(n))]) { Notes = notes });
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static GptConfig ReadConfig(OnnxGraphReader graph, string[] names, List<string> notes)
    {
        long[] Shape(string name) => [.. graph.Initializer(name).Dims];
        long[] embedding = Shape(TokenEmbedding), positions = Shape("position_embedding.weight");
        int layers = names.Select(n => n.StartsWith("blocks.", StringComparison.Ordinal) && int.TryParse(n.Split('.')[1], out int i) ? i + 1 : 0).DefaultIfEmpty(0).Max();
        if (layers == 0) throw new InvalidDataException($"{graph.Source}: no blocks.N weights; not a GptModel export.");
        using Tensor headShape = ReadLongs(graph, HeadShape);
        long[] split = headShape.data<long>().ToArray();
        if (split.Length != 5) throw new InvalidDataException($"{graph.Source}: {HeadShape} is [{string.Join(", ", split)}]; a GptModel export stores [0, 0, 3, heads, head width].");

        // The last layer norm of the graph that reads the tied or untied head decides nothing; the first one decides the
        // placement: pre-norm normalises the embeddings themselves, post-norm the first residual sum.
        NodeProto firstNorm = graph.Nodes.First(n => n.OpType == "LayerNormalization");
        bool pre = graph.Producer(firstNorm.Input[0]) is { } producer && producer.Input.All(i => graph.Producer(i)?.OpType == "Gather");
        float epsilon = firstNorm.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
        NodeProto[] nodes = [.. graph.Nodes];
        FeedForwardActivation activation = nodes.Any(n => n.OpType == "Erf") ? FeedForwardActivation.Gelu
            : nodes.Any(n => n.OpType == "Tanh") ? FeedForwardActivation.GeluTanh
            : nodes.Any(n => n.OpType == "Sigmoid") ? FeedForwardActivation.Silu
            : throw new InvalidDataException($"{graph.Source}: no GELU (Erf or Tanh) or SiLU (Sigmoid) operators; not a GptModel export.");
        bool tied = TiedHead(graph);
        var config = new GptConfig
        {
            VocabSize = (int)embedding[0], ContextLength = (int)positions[0], Width = (int)embedding[1], Layers = layers, Heads = (int)split[3],
            FeedForwardWidth = (int)Shape("blocks.0.feed_forward.expand.weight_t")[1], Activation = activation,
            NormPlacement = pre ? NormPlacement.Pre : NormPlacement.Post, LayerNormEpsilon = double.Parse(epsilon.ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture),
            TieEmbeddings = tied,
        };
        notes.Add($"Read from the ONNX graph: {layers} layers, width {config.Width}, {config.Heads} heads, feed-forward {config.FeedForwardWidth}, {config.NormPlacement}-norm, " +
            $"layer norm ε {config.LayerNormEpsilon.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}, activation {activation}, {(tied ? "head tied to the token embedding" : "separate head")}. " +
            "Dropout and the hidden-state convention are not in the graph: the GptConfig defaults were used.");
        return config;
    }

    /// <summary>Whether the stored head is the token embedding itself (an export of a tied model writes it twice).</summary>
    private static bool TiedHead(OnnxGraphReader graph)
    {
        using Tensor embedding = graph.FloatTensor(TokenEmbedding);
        using Tensor head = graph.FloatTensor("lm_head.weight_t");
        if (!head.shape.SequenceEqual([embedding.shape[1], embedding.shape[0]])) return false;
        using Tensor transposed = head.t();
        using Tensor same = transposed.eq(embedding);
        using Tensor all = same.all();
        return all.item<bool>();
    }

    private static Tensor ReadLongs(OnnxGraphReader graph, string name)
    {
        TensorProto t = graph.Initializer(name);
        long[] values = t.RawData.Length > 0 ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(t.RawData.Span).ToArray() : [.. t.Int64Data];
        return tensor(values);
    }
}
