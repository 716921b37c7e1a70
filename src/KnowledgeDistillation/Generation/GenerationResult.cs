using static TorchSharp.torch;

namespace KnowledgeDistillation.Generation;

/// <summary>
/// Prompts and their completions, <c>[B, P + N]</c>: the (left-padded) prompt in the first <see cref="PromptLength"/>
/// columns, then the generated tokens, then <c>PadTokenId</c> after a row's end. The tensors belong to the result.
/// </summary>
/// <param name="Sequences">Token ids, int64.</param>
/// <param name="AttentionMask">True for real prompt tokens and generated tokens up to and including the end token.</param>
/// <param name="CompletionMask">True for generated tokens up to and including the end token: the tokens a distillation loss scores.</param>
/// <param name="PromptLength">P, the padded prompt length.</param>
public sealed record GenerationResult(Tensor Sequences, Tensor AttentionMask, Tensor CompletionMask, int PromptLength) : IDisposable
{
    /// <summary>The generated columns, <c>[B, N]</c>.</summary>
    public Tensor Completions => Sequences.narrow(1, PromptLength, Sequences.shape[1] - PromptLength);

    /// <summary>Frees the tensors.</summary>
    public void Dispose()
    {
        Sequences.Dispose();
        AttentionMask.Dispose();
        CompletionMask.Dispose();
    }
}
