using KnowledgeDistillation.Pretrained;
using Onnx;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// The weights of a graph this library exported: each initializer carries the model's own parameter name (matrices
/// transposed under a <c>_t</c> suffix, the head as <c>lm_head.weight_t</c>), so every parameter is found by name,
/// checked for shape and copied; anything missing or misshapen is an error that names it.
/// </summary>
internal static class OwnExportWeights
{
    public static OnnxImportedModel<TModel> Load<TModel>(OnnxGraphReader graph, TModel model, bool tied, List<string> notes) where TModel : nn.Module
    {
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
                    if (source is null) throw new InvalidDataException($"{graph.Source}: no initializer holds the model's \"{name}\" (nor \"{name}_t\"); the file is not a complete export of this model.");
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
            if (tied) used.Add("lm_head.weight_t");
            string[] names = [.. graph.InitializerNames];
            string[] unused = [.. names.Where(n => !used.Contains(n) && (n.EndsWith(".weight", StringComparison.Ordinal) || n.EndsWith(".weight_t", StringComparison.Ordinal) || n.EndsWith(".bias", StringComparison.Ordinal)))];
            return new OnnxImportedModel<TModel>(model, new WeightLoadReport(loaded, unused, [.. names.Where(n => !used.Contains(n) && !unused.Contains(n))]) { Notes = notes });
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Whether the stored head is the token embedding itself (an export of a tied model writes it twice).</summary>
    public static bool TiedHead(OnnxGraphReader graph)
    {
        using Tensor embedding = graph.FloatTensor("token_embedding.weight");
        using Tensor head = graph.FloatTensor("lm_head.weight_t");
        if (!head.shape.SequenceEqual([embedding.shape[1], embedding.shape[0]])) return false;
        using Tensor transposed = head.t();
        using Tensor same = transposed.eq(embedding);
        using Tensor all = same.all();
        return all.item<bool>();
    }

    /// <summary>An int64 initializer's values.</summary>
    public static long[] Longs(OnnxGraphReader graph, string name)
    {
        TensorProto t = graph.Initializer(name);
        return t.RawData.Length > 0 ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(t.RawData.Span).ToArray() : [.. t.Int64Data];
    }

    /// <summary>The number of <c>blocks.N.</c> layers whose weights the graph holds.</summary>
    public static int Layers(IEnumerable<string> names) =>
        names.Select(n => n.StartsWith("blocks.", StringComparison.Ordinal) && int.TryParse(n.Split('.')[1], out int i) ? i + 1 : 0).DefaultIfEmpty(0).Max();

    /// <summary>A float32 value written by the exporter, read back as the double it was written from ("R" round trip).</summary>
    public static double Float32(double value) =>
        double.Parse(((float)value).ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);
}
