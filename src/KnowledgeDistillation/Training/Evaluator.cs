using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace KnowledgeDistillation.Training;

/// <summary>Cross-entropy and accuracy (for <c>[N, C]</c> logits) or perplexity (for <c>[B, S, V]</c>) of one model over evaluation data.</summary>
internal static class Evaluator
{
    public sealed record Quality(string MetricName, double Metric, double Loss);

    public static Quality Measure<TInput>(IDistillationModel<TInput> model, IEnumerable<DistillationBatch<TInput>> data, Device device)
    {
        nn.Module? module = (model as IModuleModel<TInput>)?.Module;
        bool wasTraining = module?.training ?? false;
        module?.eval();
        try
        {
            using var noGrad = no_grad();
            using var sums = NewDisposeScope();
            // Sums stay on the device across batches and are read back once at the end.
            Tensor lossSum = zeros(1, dtype: ScalarType.Float64, device: device), correct = zeros(1, dtype: ScalarType.Int64, device: device), kept = zeros(1, dtype: ScalarType.Int64, device: device);
            int rank = 0;
            foreach (DistillationBatch<TInput> raw in data)
            {
                using var scope = NewDisposeScope();
                DistillationBatch<TInput> batch = BatchPlacement.To(raw, device);
                Tensor labels = batch.Labels ?? throw new InvalidOperationException("Evaluation batches need labels.");
                Tensor logits = model.Run(batch.Inputs, OutputRequest.LogitsOnly).Logits.to(ScalarType.Float32);
                rank = (int)logits.dim();
                Tensor keep = BatchPlacement.KeptRows(batch)!;
                Tensor flatLogits = logits.reshape(-1, logits.shape[^1]), flatLabels = labels.reshape(-1), flatKeep = keep.reshape(-1);
                Tensor safeLabels = flatLabels.masked_fill(flatKeep.logical_not(), 0);
                Tensor nll = F.cross_entropy(flatLogits, safeLabels, reduction: nn.Reduction.None);
                lossSum.add_(RowMask.Sum(nll, flatKeep).to(ScalarType.Float64)); // per-batch float32 sums, accumulated in float64
                correct.add_(flatLogits.argmax(-1).eq(flatLabels).logical_and(flatKeep).sum());
                kept.add_(flatKeep.sum());
            }
            double rows = kept.item<long>();
            if (rows == 0) throw new InvalidOperationException("The evaluation data has no labelled rows.");
            double loss = lossSum.item<double>() / rows;
            return rank == 3 ? new Quality("perplexity", Math.Exp(loss), loss) : new Quality("accuracy", correct.item<long>() / rows, loss);
        }
        finally
        {
            module?.train(wasTraining);
        }
    }
}
