using KnowledgeDistillation.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx;

/// <summary>Which outputs of an ONNX model an <see cref="OnnxTeacher"/> serves, and how it feeds the model.</summary>
public sealed record OnnxTeacherOptions
{
    /// <summary>The output served as <c>ModelOutput.Logits</c> (a classifier's logits, or an embedding for feature distillation); null takes the model's first output.</summary>
    public string? LogitsOutput { get; init; }

    /// <summary>Outputs served as <c>ModelOutput.HiddenStates</c>, in this order.</summary>
    public IReadOnlyList<string> HiddenStateOutputs { get; init; } = [];

    /// <summary>Flatten every output to <c>[N, features]</c> (e.g. ResNet-18's <c>[N, 512, 1, 1]</c> embedding to <c>[N, 512]</c>).</summary>
    public bool FlattenOutputs { get; init; }

    /// <summary>Rows per ONNX Runtime call. Null uses the model's fixed batch dimension when it has one (padding the last call), else the whole input at once.</summary>
    public int? BatchSize { get; init; }

    /// <summary>ONNX Runtime session options (threads, execution providers); null uses the defaults.</summary>
    public SessionOptions? SessionOptions { get; init; }
}

/// <summary>
/// A teacher that is an ONNX model run by ONNX Runtime: usable live in the <c>DistillationTrainer</c> (inputs are
/// copied to the host, outputs back to the trainer's device) and to label a transfer set once for a
/// <c>TeacherCacheWriter</c>. Models with a fixed batch dimension are fed in chunks of that size, the last one
/// padded; the padding rows' outputs are dropped.
/// </summary>
public sealed class OnnxTeacher : IDistillationModel<Tensor>, IDevicePlacement, IDisposable
{
    private readonly InferenceSession _session;
    private readonly string _input;
    private readonly int[] _inputShape;
    private readonly string _logits;
    private readonly string[] _hidden;
    private readonly OnnxTeacherOptions _options;
    private Device _device = CPU;

    /// <summary>Opens <paramref name="modelPath"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not an ONNX model ONNX Runtime can load (the message names it).</exception>
    /// <exception cref="ArgumentException">An output name is not one of the model's (the message lists them), or the model has more than one input.</exception>
    public OnnxTeacher(string modelPath, OnnxTeacherOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        if (!File.Exists(modelPath)) throw new FileNotFoundException($"No ONNX model at {modelPath}.", modelPath);
        _options = options ?? new OnnxTeacherOptions();
        try
        {
            _session = _options.SessionOptions is null ? new InferenceSession(modelPath) : new InferenceSession(modelPath, _options.SessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"{modelPath} could not be loaded as an ONNX model: {e.Message}", e);
        }
        try
        {
            if (_session.InputMetadata.Count != 1)
            {
                throw new ArgumentException($"{modelPath} has {_session.InputMetadata.Count} inputs ({string.Join(", ", _session.InputMetadata.Keys)}); OnnxTeacher feeds models with one.", nameof(modelPath));
            }
            (_input, NodeMetadata input) = _session.InputMetadata.Single() is var pair ? (pair.Key, pair.Value) : default;
            _inputShape = input.Dimensions;
            string[] outputs = _session.OutputMetadata.Keys.ToArray();
            _logits = _options.LogitsOutput ?? outputs[0];
            _hidden = _options.HiddenStateOutputs.ToArray();
            string? unknown = _hidden.Prepend(_logits).FirstOrDefault(o => !outputs.Contains(o));
            if (unknown is not null)
            {
                throw new ArgumentException($"{modelPath} has no output \"{unknown}\"; its outputs are: {string.Join(", ", outputs)}.", nameof(options));
            }
            if (_options.BatchSize is < 1) throw new ArgumentException($"BatchSize must be null or positive; got {_options.BatchSize}.", nameof(options));
        }
        catch
        {
            _session.Dispose();
            throw;
        }
    }

    /// <summary>The model's input name and shape as ONNX Runtime reports it (−1 for dynamic dimensions).</summary>
    public (string Name, IReadOnlyList<int> Shape) Input => (_input, _inputShape);

    /// <inheritdoc />
    public ModelOutputKinds Provides => ModelOutputKinds.Logits | (_hidden.Length > 0 ? ModelOutputKinds.HiddenStates : 0);

    /// <inheritdoc />
    public void PlaceOn(Device device) => _device = device ?? throw new ArgumentNullException(nameof(device));

    /// <summary>Runs the model on <paramref name="input"/> (float32 after conversion; the first dimension is the batch).</summary>
    /// <exception cref="ArgumentException">The input's shape does not fit the model's fixed dimensions (the message names both).</exception>
    public ModelOutput Run(Tensor input, OutputRequest request)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(request);
        if (request.AnyAttention) throw new NotSupportedException("An ONNX teacher serves logits and the hidden-state outputs it was given, not attention maps.");
        if (request.HiddenStates && _hidden.Length == 0) throw new NotSupportedException("Hidden states were requested, but no HiddenStateOutputs were configured for this ONNX teacher.");
        RequireShape(input);
        long rows = input.shape[0];
        int fixedBatch = _inputShape[0] > 0 ? _inputShape[0] : 0;
        int chunk = _options.BatchSize ?? (fixedBatch > 0 ? fixedBatch : (int)Math.Max(1, rows));
        if (fixedBatch > 0 && chunk != fixedBatch) throw new ArgumentException($"The model's batch dimension is fixed at {fixedBatch}; BatchSize {chunk} cannot feed it.", nameof(input));

        string[] wanted = request.HiddenStates ? [_logits, .. _hidden] : [_logits];
        var pieces = wanted.Select(_ => new List<Tensor>()).ToArray();
        using var scope = NewDisposeScope();
        Tensor host = input.to(ScalarType.Float32).cpu().contiguous();
        for (long start = 0; start < rows; start += chunk)
        {
            long count = Math.Min(chunk, rows - start);
            Tensor slice = host.narrow(0, start, count);
            if (fixedBatch > 0 && count < fixedBatch) slice = cat([slice, zeros([fixedBatch - count, .. slice.shape[1..]])], 0);
            float[] data = slice.contiguous().data<float>().ToArray();
            var value = NamedOnnxValue.CreateFromTensor(_input, new DenseTensor<float>(data, slice.shape.Select(d => (int)d).ToArray()));
            using IDisposableReadOnlyCollection<DisposableNamedOnnxValue> results = _session.Run([value], wanted);
            for (int i = 0; i < wanted.Length; i++)
            {
                Microsoft.ML.OnnxRuntime.Tensors.Tensor<float> t = results.First(r => r.Name == wanted[i]).AsTensor<float>();
                Tensor part = tensor(t.ToArray(), t.Dimensions.ToArray().Select(d => (long)d).ToArray());
                pieces[i].Add(part.narrow(0, 0, count));
            }
        }
        Tensor[] outputs = pieces.Select(p => Shape(cat(p, 0)).to(_device)).ToArray();
        var output = new ModelOutput(outputs[0], request.HiddenStates ? outputs[1..] : null);
        return output.MoveToOuterDisposeScope();
    }

    private Tensor Shape(Tensor t) => _options.FlattenOutputs && t.dim() > 2 ? t.flatten(1) : t;

    private void RequireShape(Tensor input)
    {
        bool ok = input.dim() == _inputShape.Length && input.shape[0] >= 1
            && _inputShape.Select((d, i) => i == 0 || d <= 0 || d == input.shape[i]).All(x => x);
        if (!ok)
        {
            string expected = "[" + string.Join(", ", _inputShape.Select((d, i) => i == 0 ? "N" : d <= 0 ? "*" : d.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";
            throw new ArgumentException($"The ONNX teacher's input \"{_input}\" takes {expected}; got [{string.Join(", ", input.shape)}].", nameof(input));
        }
    }

    /// <summary>Closes the ONNX Runtime session.</summary>
    public void Dispose() => _session.Dispose();
}
