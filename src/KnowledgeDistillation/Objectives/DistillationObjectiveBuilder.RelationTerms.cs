using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

// The relation terms: losses over the relations between a batch's examples (RKD, PKT, SP) and CRD's contrastive memory bank.
public sealed partial class DistillationObjectiveBuilder
{
    /// <summary>RKD distance and angle (<see cref="RelationalKDLoss"/>; Park et al. 2019) between captured features, usually the penultimate embedding.</summary>
    public DistillationObjectiveBuilder RelationalKD(Schedule weight, FeaturePair pair, double distanceWeight = 25, double angleWeight = 50, int teacher = 0, string name = "rkd")
    {
        _ = new RelationalKDLoss(distanceWeight, angleWeight);
        return Features(name, weight, [pair], teacher, _ => new RelationalKDLoss(distanceWeight, angleWeight), (loss, s, t, mask, _) => loss.forward(s, t, mask));
    }

    /// <summary>Probabilistic knowledge transfer (<see cref="ProbabilisticKTLoss"/>; Passalis and Tefas 2018) between captured features.</summary>
    public DistillationObjectiveBuilder ProbabilisticKT(Schedule weight, FeaturePair pair, int teacher = 0, string name = "pkt") =>
        Features(name, weight, [pair], teacher, _ => new ProbabilisticKTLoss(), (loss, s, t, mask, _) => loss.forward(s, t, mask));

    /// <summary>Similarity-preserving KD (<see cref="SimilarityPreservingLoss"/>; Tung and Mori 2019) between captured features, averaged over the pairs.</summary>
    public DistillationObjectiveBuilder SimilarityPreserving(Schedule weight, IReadOnlyList<FeaturePair> pairs, int teacher = 0, string name = "similarity_preserving") =>
        Features(name, weight, pairs, teacher, _ => new SimilarityPreservingLoss(), (loss, s, t, mask, _) => loss.forward(s, t, mask));

    /// <summary>
    /// Contrastive representation distillation (<see cref="ContrastiveRepresentationLoss"/>; Tian et al. 2020) between
    /// captured features, usually the penultimate embeddings. It keeps a memory bank over the training set, so batches
    /// must say which examples they hold: <c>DistillationBatch.ExampleIndices</c> (or a <c>TokenBatch</c>'s). The
    /// embeddings and banks are part of the objective (trained, saved in checkpoints).
    /// </summary>
    public DistillationObjectiveBuilder ContrastiveRepresentation(Schedule weight, FeaturePair pair, long studentWidth, long teacherWidth, long datasetSize,
        int negatives = 16384, double temperature = 0.07, double momentum = 0.5, long embeddingWidth = 128, int teacher = 0, string name = "crd")
    {
        ContrastiveRepresentationLoss.Validate(studentWidth, teacherWidth, datasetSize, negatives, temperature, momentum, embeddingWidth); // now, not at Build()
        return Features(name, weight, [pair], teacher,
            _ => new ContrastiveRepresentationLoss(studentWidth, teacherWidth, datasetSize, negatives, temperature, momentum, embeddingWidth),
            (loss, s, t, mask, c) =>
            {
                Tensor indices = c.ExampleIndices ?? throw new InvalidOperationException(
                    $"Term \"{name}\" (CRD) keeps a memory bank per training example, so each batch must give its examples' positions: set DistillationBatch.ExampleIndices (or TokenBatch.ExampleIndices).");
                if (mask is not null) throw new NotSupportedException($"Term \"{name}\" (CRD) does not take a per-example mask: leave dropped examples out of the batch instead.");
                return loss.forward(s, t, indices);
            });
    }
}
