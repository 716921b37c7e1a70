using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Losses;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

// Terms for a teacher and a student with different tokenizers: they read a CrossTokenizerBatch.
public sealed partial class DistillationObjectiveBuilder
{
    /// <summary>
    /// Universal Logit Distillation (<see cref="UniversalLogitDistillationLoss"/>; Boizard et al. 2024) between a
    /// student and a teacher with different tokenizers: on each span where the two tokenizations of the text agree
    /// (<see cref="SpanAlignment"/>), the probabilities of the span's tokens combined by the chain rule, then the
    /// sorted-probability L1 distance. The batches must be <see cref="CrossTokenizerBatch"/>es.
    /// </summary>
    /// <param name="weight">The term's weight.</param>
    /// <param name="temperature">T applied to both sides' logits (default 1).</param>
    /// <param name="name">The term's name.</param>
    public DistillationObjectiveBuilder UniversalLogitDistillation(Schedule weight, Schedule? temperature = null, string name = "uld")
    {
        return CrossTokenizerTerm(name, weight, temperature ?? 1.0, () => new UniversalLogitDistillationLoss());
    }

    /// <summary>
    /// The GOLD-style hybrid (<see cref="CrossTokenizerHybridLoss"/>): on the aligned spans, tokens both vocabularies
    /// hold compared directly (generalised JSD with <paramref name="beta"/>), the others by ULD. The batches must be
    /// <see cref="CrossTokenizerBatch"/>es.
    /// </summary>
    /// <param name="weight">The term's weight.</param>
    /// <param name="match">The tokens the two vocabularies share (<see cref="VocabularyMatch.Between"/>).</param>
    /// <param name="beta">β of the divergence on shared tokens (0 forward KL, 1 reverse KL; default 0.5).</param>
    /// <param name="matchedWeight">Weight of the shared-token part; null for the shared share of the teacher's vocabulary.</param>
    /// <param name="unmatchedWeight">Weight of the ULD part; null for 1 − the shared-token weight.</param>
    /// <param name="temperature">T applied to both sides' logits (default 1).</param>
    /// <param name="name">The term's name.</param>
    public DistillationObjectiveBuilder CrossTokenizerHybrid(Schedule weight, VocabularyMatch match, double beta = 0.5, double? matchedWeight = null, double? unmatchedWeight = null,
        Schedule? temperature = null, string name = "hybrid")
    {
        ArgumentNullException.ThrowIfNull(match);
        CrossTokenizerHybridLoss Create() => new(match.StudentIds, match.TeacherIds, match.StudentVocabularySize, match.TeacherVocabularySize, beta, matchedWeight, unmatchedWeight);
        _ = Create(); // validates now, not at Build()
        return CrossTokenizerTerm(name, weight, temperature ?? 1.0, Create);
    }

    private DistillationObjectiveBuilder CrossTokenizerTerm(string name, Schedule weight, Schedule temperature, Func<nn.Module<Tensor, Tensor, Tensor>> create)
    {
        ArgumentNullException.ThrowIfNull(temperature);
        RequireInRange(temperature, name, "temperature", double.Epsilon, double.PositiveInfinity);
        RequireWeight(weight, name);
        return Add(_ =>
        {
            nn.Module<Tensor, Tensor, Tensor> loss = create();
            return new ObjectiveTerm(name, weight, c =>
            {
                if (c.Inputs is not CrossTokenizerBatch batch)
                {
                    throw new InvalidOperationException(
                        $"Term \"{name}\" compares models with different tokenizers and needs CrossTokenizerBatch inputs (CrossTokenizerBatch.Create); the batch holds {c.Inputs?.GetType().Name ?? "no inputs"}.");
                }
                if (c.Teachers.Count != 1) throw new InvalidOperationException($"Term \"{name}\" reads one teacher; the objective has {c.Teachers.Count}.");
                double t = temperature.ValueAt(c.Step);
                Tensor student = AlignedRows(name, c.Student.Logits, batch.StudentLabels, batch.StudentLabelRows, batch.Alignment, t, student: true);
                Tensor teacher = AlignedRows(name, c.Teacher.Logits, batch.TeacherLabels, batch.TeacherLabelRows, batch.Alignment, t, student: false);
                return batch.Alignment.Spans.Count == 0 ? c.Student.Logits.sum() * 0 : loss.forward(student, teacher);
            }, loss) { NeedsTeacherLogits = true, Temperature = temperature };
        });
    }

    /// <summary>One side's labelled rows as log-probabilities at temperature t, merged over the alignment's spans.</summary>
    private static Tensor AlignedRows(string name, Tensor logits, Tensor labels, Tensor? labelRows, SpanAlignment alignment, double t, bool student)
    {
        string side = student ? "student" : "teacher";
        if (logits.dim() != 3 || !logits.shape[..2].SequenceEqual(labels.shape))
        {
            throw new InvalidOperationException($"Term \"{name}\": the {side}'s logits {Shapes.Describe(logits.shape)} do not match its labels {Shapes.Describe(labels.shape)} ([B, S, V] against [B, S]).");
        }
        Tensor flatLabels = labels.reshape(-1);
        // The batch's own row indices when it has them: finding them here (nonzero) would wait for the device every step.
        Tensor rows = labelRows ?? flatLabels.ne(Labels.IgnoreIndex).nonzero().squeeze(1);
        long expected = student ? alignment.StudentRows : alignment.TeacherRows;
        if (rows.shape[0] != expected)
        {
            throw new InvalidOperationException($"Term \"{name}\": the {side} has {rows.shape[0]} labelled rows but the batch's alignment indexes {expected}.");
        }
        Tensor logProbabilities = logits.reshape(-1, logits.shape[2]).index_select(0, rows).div(t).log_softmax(1);
        return alignment.MergeLogProbabilities(logProbabilities, flatLabels.index_select(0, rows), student);
    }
}
