using KnowledgeDistillation.Models;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>
/// The pretrained folders written by real PyTorch (tests/pretrained-reference/generate_fixtures.py, Debian's
/// python3-torch 1.13) and the outputs its plain-PyTorch re-implementation of each Hugging Face architecture computed.
/// </summary>
internal static class PretrainedFixtures
{
    public static string Root => Path.Combine(BuildFacts.RepositoryRoot, "tests", "KnowledgeDistillation.Tests", "Fixtures", "Pretrained");

    public static string Folder(string name) => Path.Combine(Root, name);

    /// <summary>Inputs and expected outputs (read with PyBridge's safetensors reader, not the library's loaders).</summary>
    public static Expected Read(string name)
    {
        Dictionary<string, Tensor> t = Safetensors.LoadStateDict(Path.Combine(Root, name, "expected.safetensors"));
        var hidden = t.Keys.Where(k => k.StartsWith("hidden_states.", StringComparison.Ordinal)).OrderBy(k => int.Parse(k.Split('.')[1])).Select(k => t[k]).ToList();
        var attention = t.Keys.Where(k => k.StartsWith("attentions.", StringComparison.Ordinal)).OrderBy(k => int.Parse(k.Split('.')[1])).Select(k => t[k]).ToList();
        return new Expected(new TokenBatch(t["input_ids"], t["attention_mask"], t.GetValueOrDefault("token_type_ids")), t["logits"], hidden, attention);
    }

    public sealed record Expected(TokenBatch Batch, Tensor Logits, IReadOnlyList<Tensor> HiddenStates, IReadOnlyList<Tensor> Attentions);

    public static double MaxAbs(Tensor a, Tensor b)
    {
        a.shape.Should().Equal(b.shape);
        using var scope = NewDisposeScope();
        return (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();
    }
}
