using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// The initialisation GPT-2 and BERT use: every weight matrix and embedding drawn from N(0, 0.02²), every bias 0,
/// layer norms at weight 1 and bias 0. TorchSharp's defaults (Kaiming-uniform linears, N(0, 1) embeddings) make a
/// tied LM head start with logits of standard deviation about √D and train markedly slower.
/// </summary>
internal static class TransformerInitialization
{
    public const double StandardDeviation = 0.02;

    public static void Apply(nn.Module model)
    {
        using var noGrad = no_grad();
        foreach ((string name, var parameter) in model.named_parameters())
        {
            if (name.EndsWith(".bias", StringComparison.Ordinal)) parameter.zero_();
            else if (parameter.dim() >= 2) parameter.normal_(0, StandardDeviation);
        }
    }
}
