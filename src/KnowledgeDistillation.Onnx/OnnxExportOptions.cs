namespace KnowledgeDistillation.Onnx;

/// <summary>How <see cref="OnnxExport"/> writes a model.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>The lowest opset written: LayerNormalization is an operator from opset 17.</summary>
    public const int MinimumOpset = 17;

    /// <summary>
    /// The highest opset written. Every exporter's every operator is checked against each opset from
    /// <see cref="MinimumOpset"/> to this one (ReduceMean takes its axes as an input from opset 18, for example), and
    /// the tests run each exported model at each of them in ONNX Runtime.
    /// </summary>
    public const int MaximumOpset = 23;

    /// <summary>The ONNX operator set, from <see cref="MinimumOpset"/> to <see cref="MaximumOpset"/>.</summary>
    public int Opset { get; init; } = MinimumOpset;

    /// <summary>The graph input's name; null for the export's default (<c>input</c> for a <c>Sequential</c>, <c>input_ids</c> for a transformer).</summary>
    public string? InputName { get; init; }

    /// <summary>The graph output's name; null for the export's default (<c>output</c> for a <c>Sequential</c>, <c>logits</c> for a transformer).</summary>
    public string? OutputName { get; init; }

    /// <summary>
    /// Paths of <c>Sequential</c> children (as <c>named_modules()</c> names them, e.g. <c>"3"</c> or <c>"features.2"</c>)
    /// whose outputs become extra graph outputs named <c>hidden.{path}</c>, in this order: the hidden states an ONNX
    /// teacher can serve to feature terms. <c>Sequential</c> exports only: a transformer export takes
    /// <c>hiddenStates: true</c> instead, and refuses this option.
    /// </summary>
    public IReadOnlyList<string> HiddenStateLayers { get; init; } = [];

    /// <summary>Recorded as the model's producer.</summary>
    public string ProducerName { get; init; } = "KnowledgeDistillation.Onnx";

    /// <summary>The input and output names, with the export's defaults for those not set, after validation.</summary>
    internal (string Input, string Output) Resolve(string defaultInput, string defaultOutput)
    {
        if (Opset is < MinimumOpset or > MaximumOpset)
        {
            throw new ArgumentException($"{nameof(Opset)} must be from {MinimumOpset} to {MaximumOpset} (the opsets every exported operator is checked against); got {Opset}.", nameof(Opset));
        }
        if (InputName is not null && string.IsNullOrWhiteSpace(InputName)) throw new ArgumentException($"{nameof(InputName)} must not be empty; leave it null for the default.", nameof(InputName));
        if (OutputName is not null && string.IsNullOrWhiteSpace(OutputName)) throw new ArgumentException($"{nameof(OutputName)} must not be empty; leave it null for the default.", nameof(OutputName));
        string input = InputName ?? defaultInput, output = OutputName ?? defaultOutput;
        if (input == output) throw new ArgumentException($"{nameof(InputName)} and {nameof(OutputName)} must differ; both are \"{input}\".", nameof(OutputName));
        string? repeated = HiddenStateLayers.GroupBy(l => l, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1)?.Key;
        if (repeated is not null) throw new ArgumentException($"{nameof(HiddenStateLayers)} lists \"{repeated}\" more than once.", nameof(HiddenStateLayers));
        return (input, output);
    }

    /// <summary>The ONNX IR version released with the opset (ONNX 1.12–1.13: opsets 17–18, IR 8; 1.14–1.15: 19–20, IR 9; 1.16–1.17: 21–22, IR 10; 1.18–1.19: 23, IR 11).</summary>
    internal long IrVersion => Opset switch
    {
        <= 18 => 8,
        <= 20 => 9,
        <= 22 => 10,
        _ => 11,
    };
}
