using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Remote;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Serving;

/// <summary>
/// The teacher a server hosts, with the settings its answers depend on: runs a batch (eval mode, no gradients) and
/// encodes each request's part of the output as the wire's response, top-k rows computed as a teacher cache computes them.
/// </summary>
public sealed class ServedTeacher
{
    private readonly IDistillationModel<TokenBatch> _model;

    /// <summary>Wraps <paramref name="model"/> with the server's settings, and fingerprints it.</summary>
    /// <exception cref="ArgumentException">An option is not usable, or a teacher that is not a module has no <see cref="TeacherServerOptions.Identity"/>.</exception>
    public ServedTeacher(IDistillationModel<TokenBatch> model, TeacherServerOptions options)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        Options = options ?? throw new ArgumentNullException(nameof(options));
        options.Validate();
        string fingerprint;
        if (model is IModuleModel<TokenBatch> module)
        {
            module.Module.eval();
            fingerprint = options.Identity is { } identity
                ? TeacherFingerprint.Of(identity, options.Content, options.TopK, options.Temperature)
                : TeacherFingerprint.Of(module.Module, options.Content, options.TopK, options.Temperature);
        }
        else
        {
            if (string.IsNullOrWhiteSpace(options.Identity))
            {
                throw new ArgumentException(
                    $"The teacher ({model.GetType().Name}) is not a TorchSharp module, so its weights cannot be fingerprinted: set TeacherServerOptions.Identity (e.g. its ONNX file's SHA-256).", nameof(options));
            }
            fingerprint = TeacherFingerprint.Of(options.Identity, options.Content, options.TopK, options.Temperature);
        }
        long classes = OutputWidth(model);
        if (options.Content == TeacherCacheContent.TopKProbabilities && options.TopK > classes)
        {
            throw new ArgumentException($"TeacherServerOptions.TopK must not exceed the teacher's {classes} classes; got {options.TopK}.", nameof(options));
        }
        Description = new TeacherDescription(fingerprint, options.ModelName ?? model.GetType().Name, options.Content,
            options.Content == TeacherCacheContent.TopKProbabilities ? options.TopK : 0, options.Content == TeacherCacheContent.TopKProbabilities ? options.Temperature : 1.0,
            classes, options.VocabularySize, options.MaxSequencesPerRequest, options.MaxSequenceLength);
    }

    /// <summary>The teacher's output width, from one forward pass on a single token (id 0).</summary>
    private static long OutputWidth(IDistillationModel<TokenBatch> model)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        try
        {
            return model.Run(new TokenBatch(zeros(1, 1, ScalarType.Int64)), new OutputRequest()).Logits.shape[^1];
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidOperationException($"The teacher could not run on one token (id 0), which the server does to learn its output width: {e.Message}", e);
        }
    }

    /// <summary>The server's settings.</summary>
    public TeacherServerOptions Options { get; }

    /// <summary>What the server answers <c>GET /v1/teacher</c> with.</summary>
    public TeacherDescription Description { get; }

    /// <summary>The limits a request is decoded with.</summary>
    public TeacherRequestLimits Limits => new(Options.VocabularySize, Options.MaxSequencesPerRequest, Options.MaxSequenceLength);

    /// <summary>Runs the requests' batches as one forward pass (they have one shape and the same optional inputs) and encodes each one's rows.</summary>
    /// <exception cref="InvalidOperationException">The teacher's output has no logits of the batch's leading shape, or k exceeds its class count.</exception>
    public byte[][] Run(IReadOnlyList<TokenBatch> requests)
    {
        ArgumentNullException.ThrowIfNull(requests);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        TokenBatch batch = requests.Count == 1 ? requests[0] : new TokenBatch(
            cat(requests.Select(r => r.InputIds).ToArray(), 0),
            requests[0].AttentionMask is null ? null : cat(requests.Select(r => r.AttentionMask!).ToArray(), 0),
            requests[0].TokenTypeIds is null ? null : cat(requests.Select(r => r.TokenTypeIds!).ToArray(), 0));
        ModelOutput output = _model.Run(batch, new OutputRequest());
        Tensor logits = output.Logits;
        long sequences = batch.InputIds.shape[0];
        if (logits is null || logits.dim() is not (2 or 3) || logits.shape[0] != sequences || (logits.dim() == 3 && logits.shape[1] != batch.InputIds.shape[1]))
        {
            throw new InvalidOperationException(
                $"The teacher's output for a [{sequences}, {batch.InputIds.shape[1]}] batch must be logits [B, S, C] or [B, C]; got {(logits is null ? "none" : $"[{string.Join(", ", logits.shape)}]")}.");
        }
        var answers = new byte[requests.Count][];
        long start = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            long count = requests[i].InputIds.shape[0];
            Tensor part = logits.narrow(0, start, count);
            start += count;
            if (Options.Content == TeacherCacheContent.TopKProbabilities)
            {
                if (Options.TopK > part.shape[^1]) throw new InvalidOperationException($"TopK ({Options.TopK}) exceeds the teacher's {part.shape[^1]} classes.");
                using TopKTargets targets = TopKTargets.FromLogits(part, Options.TopK, Options.Temperature);
                answers[i] = TeacherWire.EncodeTopK(targets, part.shape[^1]);
            }
            else
            {
                answers[i] = TeacherWire.EncodeValues(part, Options.Content);
            }
        }
        return answers;
    }
}
