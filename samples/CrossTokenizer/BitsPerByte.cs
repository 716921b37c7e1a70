using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace CrossTokenizerSample;

/// <summary>
/// Bits per byte: the negative log-likelihood (in bits) of every token a model predicts in a window (all but the first),
/// divided by the bytes those tokens hold — the same text measured the same way whatever the tokenizer, so a byte model
/// and a BPE model are comparable (a per-token perplexity is not).
/// </summary>
internal static class BitsPerByte
{
    public static double Score(GptModel model, IReadOnlyList<CrossTokenizedText> windows, bool student, Device device, int batchSize = 64)
    {
        bool training = model.training;
        model.eval();
        double nats = 0;
        long bytes = 0;
        using (no_grad())
        {
            for (int from = 0; from < windows.Count; from += batchSize)
            {
                using var scope = NewDisposeScope();
                List<CrossTokenizedText> part = windows.Skip(from).Take(batchSize).ToList();
                var batch = CrossTokenizerBatch.Create(part, Gpt2Vocabulary.EndOfText, ' ').Inputs;
                (KnowledgeDistillation.Models.TokenBatch inputs, Tensor labels) = student ? (batch.Student, batch.StudentLabels) : (batch.Teacher, batch.TeacherLabels);
                Tensor logits = model.Run(new KnowledgeDistillation.Models.TokenBatch(inputs.InputIds.to(device), inputs.AttentionMask?.to(device)), KnowledgeDistillation.Models.OutputRequest.LogitsOnly).Logits;
                Tensor target = labels.to(device);
                Tensor keep = target.ne(-100);
                // log-softmax in float32 (the 50,257-wide rows), the chosen entries summed in float64.
                Tensor logProbabilities = logits.log_softmax(-1).gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1).to(ScalarType.Float64);
                nats -= logProbabilities.masked_select(keep).sum().item<double>();
                foreach (CrossTokenizedText text in part) bytes += (student ? text.StudentByteLengths : text.TeacherByteLengths).Skip(1).Sum();
            }
        }
        model.train(training);
        return nats / Math.Log(2) / bytes;
    }
}
