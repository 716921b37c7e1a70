using Google.Protobuf;
using KnowledgeDistillation.Transformers;
using Onnx;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Writes TorchSharp models as ONNX files that ONNX Runtime (and ML.NET's <c>ApplyOnnxModel</c>) can run. This
/// version exports <c>Sequential</c> stacks of the common layers (see <see cref="SupportedLayers"/>) with evaluation-mode
/// semantics; a module it cannot write is an error naming it and its path in the model.
/// </summary>
public static class OnnxExport
{
    /// <summary>
    /// Exports a <see cref="GptModel"/>: input <c>input_ids</c> (int64 <c>[batch, sequence]</c>, both dynamic), output
    /// <c>logits</c> <c>[batch, sequence, V]</c>, causal attention (pad on the right; no attention-mask input), and with
    /// <paramref name="hiddenStates"/> the hidden states as <c>hidden.0</c> (embeddings) … <c>hidden.L</c>, indexed as
    /// <c>ModelOutput.HiddenStates</c> (and following the model's <c>HiddenStateConvention</c> for the last).
    /// </summary>
    public static void Export(GptModel model, string path, bool hiddenStates = false, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ExportDecoder(path, options, hiddenStates ? model.Config.Layers : null, (graph, input) => GptExporter.Emit(graph, model, input, hiddenStates));
    }

    /// <summary>
    /// Exports a <see cref="LlamaModel"/> (Llama, Qwen2, Mistral) with the same inputs and outputs as
    /// <see cref="Export(GptModel, string, bool, OnnxExportOptions?)"/>: rotary positions 0 … S − 1, grouped-query
    /// attention, sliding windows, and optional <c>hidden.i</c> outputs.
    /// </summary>
    public static void Export(LlamaModel model, string path, bool hiddenStates = false, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ExportDecoder(path, options, hiddenStates ? model.Config.Layers : null, (graph, input) => LlamaExporter.Emit(graph, model, input, hiddenStates));
    }

    /// <summary>
    /// Exports a <see cref="BertModel"/> with Hugging Face's BERT inputs: <c>input_ids</c>, <c>attention_mask</c> (1 = real
    /// token, 0 = padding; padded keys receive no attention) and <c>token_type_ids</c>, each int64 <c>[batch, sequence]</c>
    /// with dynamic axes. The output <c>logits</c> is the configured head's: <c>[batch, labels]</c> for sequence
    /// classification, <c>[batch, sequence, V]</c> for masked LM, the last hidden state for no head. With
    /// <paramref name="hiddenStates"/>, <c>hidden.0</c> (the normed embeddings) … <c>hidden.L</c>.
    /// </summary>
    public static void Export(BertModel model, string path, bool hiddenStates = false, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ExportTokenModel(path, options, ["attention_mask", "token_type_ids"], hiddenStates ? model.Config.Layers : null,
            (graph, inputs) => BertExporter.Emit(graph, model, inputs[0], inputs[1], inputs[2], hiddenStates));
    }

    /// <summary>A decoder graph: int64 token ids [batch, sequence] in, logits and optional hidden states out.</summary>
    private static void ExportDecoder(string path, OnnxExportOptions? options, int? layers, Func<OnnxGraph, string, (string Logits, List<(string Name, string Value)> Hidden)> emit) =>
        ExportTokenModel(path, options, [], layers, (graph, inputs) => emit(graph, inputs[0]));

    /// <summary>
    /// A graph over int64 [batch, sequence] inputs (the token ids first, then <paramref name="otherInputs"/>) with logits
    /// out, and hidden.0 … hidden.<paramref name="layers"/> when <paramref name="layers"/> is given.
    /// </summary>
    private static void ExportTokenModel(string path, OnnxExportOptions? options, string[] otherInputs, int? layers,
        Func<OnnxGraph, string[], (string Logits, List<(string Name, string Value)> Hidden)> emit)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new OnnxExportOptions();
        (string inputName, string outputName) = options.Resolve("input_ids", "logits");
        if (options.HiddenStateLayers.Count > 0)
        {
            throw new ArgumentException($"{nameof(OnnxExportOptions.HiddenStateLayers)} names layers of a Sequential export; a transformer export takes hiddenStates: true, " +
                $"which adds hidden.0 … hidden.L. Got {options.HiddenStateLayers.Count} layer(s): {string.Join(", ", options.HiddenStateLayers)}.", nameof(options));
        }
        string[] hiddenNames = layers is int count ? [.. Enumerable.Range(0, count + 1).Select(i => $"hidden.{i}")] : [];
        var graph = new OnnxGraph([inputName, .. otherInputs, outputName, .. hiddenNames], options.Opset);
        string[] inputs = [.. new[] { inputName }.Concat(otherInputs).Select(name => graph.Input(name, TensorProto.Types.DataType.Int64, [-1, -1], ["batch", "sequence"]))];
        (string logits, List<(string Name, string Value)> hidden) result;
        using (no_grad()) result = emit(graph, inputs);
        graph.Output(result.logits, outputName);
        foreach ((string name, string value) in result.hidden) graph.Output(value, name);
        Write(graph, options, path);
    }

    /// <summary>The layer types a <c>Sequential</c> may contain.</summary>
    public static IReadOnlyList<string> SupportedLayers => SequentialExporter.Supported;

    /// <summary>Exports <paramref name="model"/> to <paramref name="path"/>.</summary>
    /// <param name="model">A <c>Sequential</c> of supported layers.</param>
    /// <param name="inputShape">The input's shape; −1 marks a dynamic dimension (e.g. <c>[-1, 1, 28, 28]</c> for any batch size).</param>
    /// <param name="path">The .onnx file to write (replaced when it exists).</param>
    /// <param name="inputType">Float32 for features, Int64 for token ids (models that start with an <c>Embedding</c>).</param>
    /// <param name="options">Opset and names.</param>
    /// <exception cref="NotSupportedException">A module cannot be exported; the message names it and its path. Nothing is written.</exception>
    public static void Export(nn.Module model, long[] inputShape, string path, ScalarType inputType = ScalarType.Float32, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new OnnxExportOptions();
        (string inputName, string outputName) = options.Resolve("input", "output");
        if (inputShape.Length == 0 || inputShape.Any(d => d == 0 || d < -1))
        {
            throw new ArgumentException($"inputShape must list positive sizes or -1 (dynamic); got [{string.Join(", ", inputShape)}].", nameof(inputShape));
        }
        if (model is not Sequential)
        {
            throw new NotSupportedException($"The module at \"(root)\" ({model.GetType().Name}) cannot be exported to ONNX: this version exports Sequential stacks of {string.Join(", ", SupportedLayers)}.");
        }
        TensorProto.Types.DataType elementType = inputType switch
        {
            ScalarType.Float32 => TensorProto.Types.DataType.Float,
            ScalarType.Int64 => TensorProto.Types.DataType.Int64,
            _ => throw new ArgumentException($"inputType must be Float32 or Int64; got {inputType}.", nameof(inputType)),
        };

        var graph = new OnnxGraph([inputName, outputName, .. options.HiddenStateLayers.Select(layer => "hidden." + layer)], options.Opset);
        string[] dimensionNames = inputShape.Select((_, i) => i == 0 ? "batch" : $"dim_{i}").ToArray();
        string input = graph.Input(inputName, elementType, inputShape, dimensionNames);
        var taps = options.HiddenStateLayers.ToDictionary(p => p, _ => (string?)null, StringComparer.Ordinal);
        string last;
        using (no_grad())
        {
            last = SequentialExporter.Emit(graph, model, "", input, taps);
        }
        string? missing = taps.FirstOrDefault(t => t.Value is null).Key;
        if (missing is not null)
        {
            string known = string.Join(", ", model.named_modules().Select(m => m.name).Where(n => n.Length > 0).Take(30));
            throw new ArgumentException($"HiddenStateLayers names \"{missing}\", which is not a layer of the model; its layers are: {known}.", nameof(options));
        }
        graph.Output(last, outputName);
        foreach (string layer in options.HiddenStateLayers) graph.Output(taps[layer]!, "hidden." + layer);
        Write(graph, options, path);
    }

    private static void Write(OnnxGraph graph, OnnxExportOptions options, string path)
    {
        var proto = new ModelProto
        {
            IrVersion = options.IrVersion,
            ProducerName = options.ProducerName,
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "",
            Graph = graph.Graph,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = options.Opset });

        string temporary = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (FileStream stream = File.Create(temporary)) proto.WriteTo(stream);
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }
}
