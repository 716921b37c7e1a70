using System.Text;
using KnowledgeDistillation.Generation;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace TinyGpt;

/// <summary>
/// Generation quality as the GKD papers measure it: a model samples continuations of held-out prompts (temperature 1,
/// a fixed seed), and the teacher scores them — its mean negative log-likelihood per generated token. Lower means text
/// the teacher finds more plausible.
/// </summary>
internal static class SampleQuality
{
    private const int BatchRows = 64, ShownSamples = 3;

    public static (double Nll, IReadOnlyList<string> Samples) TeacherNll(ICausalLanguageModel model, GptModel teacher, Tensor prompts)
    {
        var options = new GenerationOptions { MaxNewTokens = Experiment.CompletionLength, Sample = true, Temperature = 1.0, Seed = 77 };
        double total = 0;
        long tokens = 0;
        var samples = new List<string>();
        bool training = teacher.training;
        teacher.eval();
        Device device = Samples.Shared.SampleDevice.Of(teacher);
        for (long start = 0; start < prompts.shape[0]; start += BatchRows)
        {
            using var scope = NewDisposeScope();
            Tensor rows = prompts.narrow(0, start, Math.Min(BatchRows, prompts.shape[0] - start)).to(device);
            using GenerationResult result = TextGeneration.Generate(model, rows, null, options with { Seed = options.Seed + start });
            DistillationBatch<TokenBatch> batch = OnPolicyBatches.Assemble(rows, null, result.Completions, result.CompletionMask.narrow(1, result.PromptLength, result.Completions.shape[1]));
            using (no_grad())
            {
                Tensor logits = teacher.Run(batch.Inputs, OutputRequest.LogitsOnly).Logits;
                total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), batch.Labels!.reshape(-1), ignore_index: -100, reduction: nn.Reduction.Sum).item<float>();
                tokens += batch.Labels!.ne(-100).sum().item<long>();
            }
            for (int i = 0; samples.Count < ShownSamples && i < rows.shape[0]; i++)
            {
                samples.Add(Text(rows[i]) + " ⟶ " + Text(result.Completions[i]));
            }
        }
        teacher.train(training);
        return (total / tokens, samples);
    }

    private static string Text(Tensor bytes) =>
        Encoding.ASCII.GetString(bytes.cpu().data<long>().ToArray().Select(b => (byte)b).ToArray()).Replace('\n', '⏎');
}
