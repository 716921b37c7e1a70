using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Generation;

/// <summary>
/// Autoregressive generation for the decoders (<see cref="ICausalLanguageModel"/>): the prompts run once through the
/// model, filling a <see cref="KeyValueCache"/>, and each new token is fed alone after that. Batched prompts are
/// padded on the left (their positions count real tokens only, <c>cumsum(mask) − 1</c>, as Hugging Face's
/// <c>generate</c> does); tokens are chosen greedily or sampled with temperature, top-k and top-p from a generator
/// seeded by <see cref="GenerationOptions.Seed"/>; a row ends at <see cref="GenerationOptions.EosTokenId"/>.
/// </summary>
public static class TextGeneration
{
    /// <summary>Continues each prompt.</summary>
    /// <param name="model">The decoder; it runs in evaluation mode without gradients and is restored to its mode after.</param>
    /// <param name="promptIds"><c>[B, P]</c> token ids, padded on the left.</param>
    /// <param name="promptMask"><c>[B, P]</c> bool or 0/1, true for real tokens; null when no prompt is padded.</param>
    /// <param name="options">How to pick tokens.</param>
    /// <exception cref="ArgumentException">Bad shapes, a mask that is not left padding, or P + MaxNewTokens beyond the model's context; the message names the argument.</exception>
    public static GenerationResult Generate(ICausalLanguageModel model, Tensor promptIds, Tensor? promptMask, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(promptIds);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (promptIds.dim() != 2 || !is_integral(promptIds.dtype) || promptIds.dtype == ScalarType.Bool || promptIds.shape[1] < 1 || promptIds.shape[0] < 1)
        {
            throw new ArgumentException($"promptIds must be integer token ids of shape [B, P] with B, P ≥ 1; got {promptIds.dtype} {Shapes.Describe(promptIds.shape)}.", nameof(promptIds));
        }
        long rows = promptIds.shape[0], promptLength = promptIds.shape[1];
        // Both are written into the output (and the pad is fed back to the model after a row ends): they must be tokens of its vocabulary.
        if (options.EosTokenId >= model.VocabSize)
        {
            throw new ArgumentException($"{nameof(GenerationOptions.EosTokenId)} must be a token of the model's vocabulary, in [0, {model.VocabSize}); got {options.EosTokenId}.", nameof(options));
        }
        if (options.PadTokenId >= model.VocabSize)
        {
            throw new ArgumentException($"{nameof(GenerationOptions.PadTokenId)} must be a token of the model's vocabulary, in [0, {model.VocabSize}); got {options.PadTokenId}.", nameof(options));
        }
        if (promptLength + options.MaxNewTokens > model.ContextLength)
        {
            throw new ArgumentException($"The prompts have {promptLength} tokens and MaxNewTokens is {options.MaxNewTokens}, {promptLength + options.MaxNewTokens} in all; the model's context holds {model.ContextLength}.", nameof(options));
        }
        if (promptMask is not null && !promptMask.shape.SequenceEqual(promptIds.shape))
        {
            throw new ArgumentException($"promptMask must have the prompts' shape {Shapes.Describe(promptIds.shape)}; got {Shapes.Describe(promptMask.shape)}.", nameof(promptMask));
        }

        nn.Module module = model.Module;
        bool training = module.training;
        Device device = module.parameters().Select(p => p.device).FirstOrDefault() ?? CPU;
        module.eval();
        try
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            using var cache = new KeyValueCache();
            Tensor ids = promptIds.to(ScalarType.Int64).to(device);
            Tensor prompt = promptMask is null ? ones(rows, promptLength, dtype: ScalarType.Bool, device: device) : (promptMask.dtype == ScalarType.Bool ? promptMask : promptMask.ne(0)).to(device);
            RequireLeftPadding(prompt);
            Tensor mask = prompt;
            Tensor positions = mask.to(ScalarType.Int64).cumsum(1).sub(1).clamp_min(0);
            using var generator = new Generator((ulong)options.Seed, device);

            Tensor logits = model.Run(new TokenBatch(ids, mask) { PositionIds = positions }, OutputRequest.LogitsOnly, cache).Logits.select(1, -1);
            Tensor lastPosition = positions.select(1, -1);
            Tensor finished = zeros(rows, dtype: ScalarType.Bool, device: device);
            var tokens = new List<Tensor>();
            var produced = new List<Tensor>();
            for (int step = 0; step < options.MaxNewTokens; step++)
            {
                Tensor next = Choose(logits, options, generator);
                Tensor active = finished.logical_not();
                next = next.masked_fill(finished, options.PadTokenId);
                tokens.Add(next);
                produced.Add(active);
                if (step == options.MaxNewTokens - 1) break;
                if (options.EosTokenId is { } eos)
                {
                    finished = finished.logical_or(next.eq(eos));
                    if (finished.all().item<bool>()) break; // the one host read per token, and only when rows can end
                }

                mask = cat([mask, active.unsqueeze(1)], 1);
                lastPosition = lastPosition + 1;
                logits = model.Run(new TokenBatch(next.unsqueeze(1), mask) { PositionIds = lastPosition.unsqueeze(1) }, OutputRequest.LogitsOnly, cache).Logits.select(1, -1);
            }

            Tensor completions = stack(tokens, 1), completionMask = stack(produced, 1);
            Tensor sequences = cat([ids, completions], 1);
            Tensor attention = cat([prompt, completionMask], 1);
            Tensor completionColumns = cat([zeros(rows, promptLength, dtype: ScalarType.Bool, device: device), completionMask], 1);
            return new GenerationResult(sequences.MoveToOuterDisposeScope(), attention.MoveToOuterDisposeScope(), completionColumns.MoveToOuterDisposeScope(), (int)promptLength);
        }
        finally
        {
            module.train(training);
        }
    }

    /// <summary>The next token of every row, <c>[B]</c>.</summary>
    internal static Tensor Choose(Tensor logits, GenerationOptions options, Generator generator)
    {
        if (!options.Sample) return logits.argmax(-1);
        Tensor scores = logits.to(ScalarType.Float32) / options.Temperature;
        if (options.TopK > 0 && options.TopK < scores.shape[^1])
        {
            Tensor kth = scores.topk(options.TopK, -1).values.narrow(-1, options.TopK - 1, 1);
            scores = scores.masked_fill(scores.lt(kth), double.NegativeInfinity);
        }
        if (options.TopP < 1)
        {
            (Tensor sorted, Tensor order) = scores.sort(-1, descending: true);
            Tensor probabilities = sorted.softmax(-1);
            // Drop a token when the more likely ones already reach p; the most likely token always stays.
            Tensor drop = probabilities.cumsum(-1).sub(probabilities).ge(options.TopP);
            scores = scores.scatter(-1, order, sorted.masked_fill(drop, double.NegativeInfinity));
        }
        return scores.softmax(-1).multinomial(1, false, generator).squeeze(-1);
    }

    private static void RequireLeftPadding(Tensor mask)
    {
        // Left padding: once a row's real tokens start, they continue to the end.
        Tensor started = mask.to(ScalarType.Int64).cummax(1).values.to(ScalarType.Bool);
        if (!started.eq(mask).all().item<bool>())
        {
            throw new ArgumentException("promptMask must pad on the left (0s, then 1s in every row): generation appends after the last column.", "promptMask");
        }
        if (!mask.any(1).all().item<bool>()) throw new ArgumentException("promptMask has a row without any real token.", "promptMask");
    }
}
