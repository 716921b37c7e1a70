namespace KnowledgeDistillation.Onnx;

/// <summary>How <see cref="OnnxExport"/> writes a model.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>The ONNX operator set (17 or later: LayerNormalization is an operator from 17).</summary>
    public int Opset { get; init; } = 17;

    /// <summary>The graph input's name.</summary>
    public string InputName { get; init; } = "input";

    /// <summary>The graph output's name.</summary>
    public string OutputName { get; init; } = "output";

    /// <summary>
    /// Paths of <c>Sequential</c> children (as <c>named_modules()</c> names them, e.g. <c>"3"</c> or <c>"features.2"</c>)
    /// whose outputs become extra graph outputs named <c>hidden.{path}</c>, in this order: the hidden states an ONNX
    /// teacher can serve to feature terms.
    /// </summary>
    public IReadOnlyList<string> HiddenStateLayers { get; init; } = [];

    /// <summary>Recorded as the model's producer.</summary>
    public string ProducerName { get; init; } = "KnowledgeDistillation.Onnx";

    internal void Validate()
    {
        if (Opset < 17) throw new ArgumentException($"{nameof(Opset)} must be 17 or later; got {Opset}.", nameof(Opset));
        if (string.IsNullOrWhiteSpace(InputName)) throw new ArgumentException($"{nameof(InputName)} must not be empty.", nameof(InputName));
        if (string.IsNullOrWhiteSpace(OutputName)) throw new ArgumentException($"{nameof(OutputName)} must not be empty.", nameof(OutputName));
        if (InputName == OutputName) throw new ArgumentException($"{nameof(InputName)} and {nameof(OutputName)} must differ; both are \"{InputName}\".", nameof(OutputName));
        string? repeated = HiddenStateLayers.GroupBy(l => l, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1)?.Key;
        if (repeated is not null) throw new ArgumentException($"{nameof(HiddenStateLayers)} lists \"{repeated}\" more than once.", nameof(HiddenStateLayers));
    }
}
