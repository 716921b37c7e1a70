using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>Runs a stack of blocks, keeping per-layer outputs only when they are requested.</summary>
internal static class TransformerStack
{
    public sealed record Result(Tensor Last, List<Tensor>? HiddenStates, List<Tensor>? Scores, List<Tensor>? Probabilities);

    public static Result Run(IEnumerable<TransformerBlock> blocks, Tensor embeddings, Tensor? additiveMask, bool causal, OutputRequest request)
    {
        List<Tensor>? hidden = request.HiddenStates ? [embeddings] : null;
        List<Tensor>? scores = request.AttentionScores ? [] : null;
        List<Tensor>? probabilities = request.AttentionProbabilities ? [] : null;
        Tensor x = embeddings;
        foreach (TransformerBlock block in blocks)
        {
            AttentionResult r = block.Forward(x, additiveMask, causal, request.AnyAttention);
            x = r.Output;
            hidden?.Add(x);
            scores?.Add(r.Scores!);
            probabilities?.Add(r.Probabilities!);
        }
        return new Result(x, hidden, scores, probabilities);
    }
}
