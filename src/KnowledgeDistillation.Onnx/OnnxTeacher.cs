using KnowledgeDistillation.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// A teacher that is an ONNX model run by ONNX Runtime: usable live in the <c>DistillationTrainer</c> (inputs are
/// copied to the host, outputs back to the trainer's device) and to label a transfer set once for a
/// <c>TeacherCacheWriter</c>. Two kinds of model: one float input (an image or feature model, fed a <c>Tensor</c>), or
/// token inputs named as <see cref="OnnxTokenInputs"/> says (a Hugging Face text model, or the library's own GPT, BERT
/// and Llama exports, fed a <c>TokenBatch</c>). A text encoder's last hidden state can be pooled and normalised into a
/// sentence embedding (<see cref="OnnxTeacherOptions.Pooling"/>). Models with a fixed batch dimension are fed in chunks
/// of that size, the last one padded; the padding rows' outputs are dropped.
/// </summary>
public sealed class OnnxTeacher : IDistillationModel<Tensor>, IDistillationModel<TokenBatch>, IDevicePlacement, IDisposable
{
    private readonly InferenceSession _session;
    private readonly (string Name, int[] Shape, Type Element)[] _inputs;
    private readonly bool _takesTokens;
    private readonly string _logits;
    private readonly string[] _hidden;
    private readonly OnnxTeacherOptions _options;
    private Device _device = CPU;

    /// <summary>Opens <paramref name="modelPath"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not an ONNX model ONNX Runtime can load (the message names it).</exception>
    /// <exception cref="ArgumentException">An output name is not one of the model's (the message lists them), or the model's inputs are neither one float tensor nor token inputs (the message lists them).</exception>
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
            _inputs = [.. _session.InputMetadata.Select(pair => (pair.Key, pair.Value.Dimensions, pair.Value.ElementType))];
            _takesTokens = ReadsTokens(modelPath);
            string[] outputs = _session.OutputMetadata.Keys.ToArray();
            _logits = _options.LogitsOutput ?? outputs[0];
            _hidden = _options.HiddenStateOutputs.ToArray();
            string? unknown = _hidden.Prepend(_logits).FirstOrDefault(o => !outputs.Contains(o));
            if (unknown is not null)
            {
                throw new ArgumentException($"{modelPath} has no output \"{unknown}\"; its outputs are: {string.Join(", ", outputs)}.", nameof(options));
            }
            if (_options.BatchSize is < 1) throw new ArgumentException($"BatchSize must be null or positive; got {_options.BatchSize}.", nameof(options));
            if (_options.MaxSequenceLength is < 1) throw new ArgumentException($"MaxSequenceLength must be null or positive; got {_options.MaxSequenceLength}.", nameof(options));
            if (!Enum.IsDefined(_options.Pooling)) throw new ArgumentException($"Pooling {(int)_options.Pooling} is not a SequencePooling value.", nameof(options));
        }
        catch
        {
            _session.Dispose();
            throw;
        }
    }

    /// <summary>Whether the model takes a <c>TokenBatch</c> (token inputs) rather than one float <c>Tensor</c>.</summary>
    public bool TakesTokens => _takesTokens;

    /// <summary>The model's first input name and shape as ONNX Runtime reports it (−1 for dynamic dimensions).</summary>
    public (string Name, IReadOnlyList<int> Shape) Input => (_inputs[0].Name, _inputs[0].Shape);

    /// <summary>The model's input names, in the model's order.</summary>
    public IReadOnlyList<string> InputNames => [.. _inputs.Select(i => i.Name)];

    /// <inheritdoc />
    public ModelOutputKinds Provides => ModelOutputKinds.Logits | (_hidden.Length > 0 ? ModelOutputKinds.HiddenStates : 0);

    /// <inheritdoc />
    public void PlaceOn(Device device) => _device = device ?? throw new ArgumentNullException(nameof(device));

    /// <summary>Runs a model of one float input on <paramref name="input"/> (float32 after conversion; the first dimension is the batch).</summary>
    /// <exception cref="ArgumentException">The input's shape does not fit the model's fixed dimensions (the message names both).</exception>
    /// <exception cref="NotSupportedException">The model takes token inputs: pass a <c>TokenBatch</c>.</exception>
    public ModelOutput Run(Tensor input, OutputRequest request)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(request);
        if (_takesTokens) throw new NotSupportedException($"This ONNX model takes token inputs ({string.Join(", ", InputNames)}): pass a TokenBatch.");
        RequireRequest(request);
        RequireShape(input);
        using var scope = NewDisposeScope();
        Tensor host = input.to(ScalarType.Float32).cpu().contiguous();
        (string name, int[] shape, _) = _inputs[0];
        NamedOnnxValue[] Slice(long start, long count, int padTo)
        {
            Tensor slice = PadRows(host.narrow(0, start, count), padTo);
            return [NamedOnnxValue.CreateFromTensor(name, new DenseTensor<float>(slice.data<float>().ToArray(), slice.shape.Select(d => (int)d).ToArray()))];
        }
        return Execute(host.shape[0], shape[0], Slice, mask: null, request).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Runs a model of token inputs on <paramref name="batch"/>: the ids, and whichever of the attention mask, token
    /// types and positions the model takes (from the batch, else ones, zeros and 0 … S − 1).
    /// </summary>
    /// <exception cref="ArgumentException">The batch's tensors are not <c>[N, S]</c> of one shape (the message names them).</exception>
    /// <exception cref="NotSupportedException">The model takes one float tensor: pass a <c>Tensor</c>.</exception>
    public ModelOutput Run(TokenBatch batch, OutputRequest request)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(request);
        if (!_takesTokens) throw new NotSupportedException($"This ONNX model takes one float input (\"{_inputs[0].Name}\"): pass a Tensor.");
        RequireRequest(request);
        Tensor ids = batch.InputIds;
        if (ids.dim() != 2 || ids.shape[0] < 1 || ids.shape[1] < 1) throw new ArgumentException($"InputIds must be [N, S] with N, S ≥ 1; got [{string.Join(", ", ids.shape)}].", nameof(batch));
        if (ids.shape[1] > _options.MaxSequenceLength)
        {
            throw new ArgumentException($"InputIds has sequence length {ids.shape[1]}; the model takes at most MaxSequenceLength = {_options.MaxSequenceLength} tokens. " +
                "Cut each text to the model's length (PretrainedTokenizer.Encode(text, maxLength) keeps [CLS] and [SEP]).", nameof(batch));
        }
        foreach ((string field, Tensor? t) in new[] { ("AttentionMask", batch.AttentionMask), ("TokenTypeIds", batch.TokenTypeIds), ("PositionIds", batch.PositionIds) })
        {
            if (t is not null && !t.shape.SequenceEqual(ids.shape)) throw new ArgumentException($"{field} must have InputIds' shape [{string.Join(", ", ids.shape)}]; got [{string.Join(", ", t.shape)}].", nameof(batch));
        }
        using var scope = NewDisposeScope();
        OnnxTokenInputs names = _options.TokenInputs;
        Tensor Host(Tensor? t, Func<Tensor> fallback) => (t ?? fallback()).to(ScalarType.Int64).cpu().contiguous();
        Tensor mask = Host(batch.AttentionMask, () => ones_like(ids));
        var sources = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            [names.InputIds] = Host(ids, () => ids),
            [names.AttentionMask] = mask,
            [names.TokenTypeIds] = Host(batch.TokenTypeIds, () => zeros_like(ids)),
            [names.PositionIds] = Host(batch.PositionIds, () => arange(ids.shape[1], dtype: ScalarType.Int64).expand(ids.shape[0], -1)),
        };
        NamedOnnxValue[] Slice(long start, long count, int padTo) =>
            [.. _inputs.Select(input => TokenValue(input.Name, input.Element, PadRows(sources[input.Name].narrow(0, start, count), padTo)))];
        try
        {
            return Execute(ids.shape[0], _inputs[0].Shape[0], Slice, mask, request).MoveToOuterDisposeScope();
        }
        catch (OnnxRuntimeException e)
        {
            // ONNX Runtime names the node that failed, not the input that made it fail; the usual causes are the batch's.
            throw new ArgumentException($"ONNX Runtime could not run the model on a batch of [{string.Join(", ", ids.shape)}] tokens: {e.Message.Trim()} " +
                "A sequence longer than the model's positions (set MaxSequenceLength to check it first) or an id outside its vocabulary fails this way.", nameof(batch), e);
        }
    }

    /// <summary>Feeds the model chunk by chunk and assembles, pools and places the requested outputs.</summary>
    private ModelOutput Execute(long rows, int batchDimension, Func<long, long, int, NamedOnnxValue[]> slice, Tensor? mask, OutputRequest request)
    {
        int fixedBatch = batchDimension > 0 ? batchDimension : 0;
        int chunk = _options.BatchSize ?? (fixedBatch > 0 ? fixedBatch : (int)Math.Max(1, rows));
        if (fixedBatch > 0 && chunk != fixedBatch) throw new ArgumentException($"The model's batch dimension is fixed at {fixedBatch}; BatchSize {chunk} cannot feed it.", nameof(request));

        string[] wanted = request.HiddenStates ? [_logits, .. _hidden] : [_logits];
        var pieces = wanted.Select(_ => new List<Tensor>()).ToArray();
        for (long start = 0; start < rows; start += chunk)
        {
            long count = Math.Min(chunk, rows - start);
            using IDisposableReadOnlyCollection<DisposableNamedOnnxValue> results = _session.Run(slice(start, count, fixedBatch), wanted);
            for (int i = 0; i < wanted.Length; i++)
            {
                Microsoft.ML.OnnxRuntime.Tensors.Tensor<float> t = results.First(r => r.Name == wanted[i]).AsTensor<float>();
                Tensor part = tensor(t.ToArray(), t.Dimensions.ToArray().Select(d => (long)d).ToArray());
                pieces[i].Add(part.narrow(0, 0, count));
            }
        }
        Tensor logits = Embed(Shape(cat(pieces[0], 0)), mask);
        Tensor[] hidden = [.. pieces.Skip(1).Select(p => Shape(cat(p, 0)).to(_device))];
        return new ModelOutput(logits.to(_device), request.HiddenStates ? hidden : null);
    }

    /// <summary>Pools a <c>[N, S, H]</c> output into <c>[N, H]</c> and normalises it, as the options say.</summary>
    private Tensor Embed(Tensor output, Tensor? mask)
    {
        if (_options.Pooling != SequencePooling.None && output.dim() != 3)
        {
            throw new InvalidOperationException($"Pooling {_options.Pooling} needs a [N, S, H] output; \"{_logits}\" is [{string.Join(", ", output.shape)}].");
        }
        output = Pooling.Apply(_options.Pooling, output, mask);
        return _options.Normalize ? nn.functional.normalize(output, p: 2, dim: -1) : output;
    }

    private static NamedOnnxValue TokenValue(string name, Type element, Tensor values)
    {
        int[] shape = [.. values.shape.Select(d => (int)d)];
        return element == typeof(int)
            ? NamedOnnxValue.CreateFromTensor(name, new DenseTensor<int>(values.to(ScalarType.Int32).data<int>().ToArray(), shape))
            : NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(values.data<long>().ToArray(), shape));
    }

    /// <summary>Zero rows after <paramref name="slice"/> up to a fixed batch of <paramref name="padTo"/> (0: none).</summary>
    private static Tensor PadRows(Tensor slice, int padTo) =>
        (padTo > 0 && slice.shape[0] < padTo ? cat([slice, zeros([padTo - slice.shape[0], .. slice.shape[1..]], slice.dtype)], 0) : slice).contiguous();

    private bool ReadsTokens(string modelPath)
    {
        OnnxTokenInputs names = _options.TokenInputs;
        string[] inputNames = [.. _inputs.Select(i => i.Name)];
        if (inputNames.Contains(names.InputIds))
        {
            string[] unknown = [.. inputNames.Where(n => !names.All.Contains(n))];
            (string Name, int[] Shape, Type Element)[] notInteger = [.. _inputs.Where(i => i.Element != typeof(long) && i.Element != typeof(int))];
            if (unknown.Length > 0 || notInteger.Length > 0)
            {
                throw new ArgumentException($"{modelPath} takes {string.Join(", ", inputNames)}; as a token model it may take only {string.Join(", ", names.All)} (see OnnxTokenInputs), all int64 or int32" +
                    $"{(unknown.Length > 0 ? $"; unknown: {string.Join(", ", unknown)}" : "")}{(notInteger.Length > 0 ? $"; not integer: {string.Join(", ", notInteger.Select(i => $"{i.Name} ({i.Element.Name})"))}" : "")}.", nameof(modelPath));
            }
            return true;
        }
        if (_inputs.Length != 1)
        {
            throw new ArgumentException($"{modelPath} has {_inputs.Length} inputs ({string.Join(", ", inputNames)}); OnnxTeacher feeds one float input, or token inputs whose ids input is named \"{names.InputIds}\" (set OnnxTeacherOptions.TokenInputs for other names).", nameof(modelPath));
        }
        return false;
    }

    private void RequireRequest(OutputRequest request)
    {
        if (request.AnyAttention) throw new NotSupportedException("An ONNX teacher serves logits and the hidden-state outputs it was given, not attention maps.");
        if (request.HiddenStates && _hidden.Length == 0) throw new NotSupportedException("Hidden states were requested, but no HiddenStateOutputs were configured for this ONNX teacher.");
    }

    private Tensor Shape(Tensor t) => _options.FlattenOutputs && t.dim() > 2 ? t.flatten(1) : t;

    private void RequireShape(Tensor input)
    {
        int[] shape = _inputs[0].Shape;
        bool ok = input.dim() == shape.Length && input.shape[0] >= 1
            && shape.Select((d, i) => i == 0 || d <= 0 || d == input.shape[i]).All(x => x);
        if (!ok)
        {
            string expected = "[" + string.Join(", ", shape.Select((d, i) => i == 0 ? "N" : d <= 0 ? "*" : d.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";
            throw new ArgumentException($"The ONNX teacher's input \"{_inputs[0].Name}\" takes {expected}; got [{string.Join(", ", input.shape)}].", nameof(input));
        }
    }

    /// <summary>Closes the ONNX Runtime session.</summary>
    public void Dispose() => _session.Dispose();
}
