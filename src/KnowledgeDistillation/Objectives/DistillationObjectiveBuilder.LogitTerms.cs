using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

// The logit terms: divergences between the student's and the teachers' softened outputs, and the hard-label term.
public sealed partial class DistillationObjectiveBuilder
{
    /// <summary>
    /// Soft targets: <see cref="SoftTargetKLLoss"/> between the student and the (averaged) teachers; with
    /// <paramref name="standardizeLogits"/>, both models' logits are standardised per row first (Sun et al. 2024).
    /// </summary>
    /// <param name="weight">The term's weight.</param>
    /// <param name="temperature">T (default 2).</param>
    /// <param name="scaleByTemperatureSquared">Multiply by T² (default true).</param>
    /// <param name="standardizeLogits">Standardise both models' logits per row before the temperature.</param>
    /// <param name="rows">Which rows are distilled: those with a label (default) or every token the mask keeps (DistilBERT on masked-LM batches).</param>
    /// <param name="name">The term's name.</param>
    public DistillationObjectiveBuilder SoftTargets(Schedule weight, Schedule? temperature = null, bool scaleByTemperatureSquared = true, bool standardizeLogits = false,
        LogitRows rows = LogitRows.Labelled, string name = "soft") =>
        Divergence(name, weight, temperature ?? 2.0, rows, () => new SoftTargetKLLoss(2.0, scaleByTemperatureSquared) { StandardizeLogits = standardizeLogits });

    /// <summary>
    /// Decoupled KD (<see cref="DecoupledKDLoss"/>; Zhao et al. 2022): α · TCKD + β · NCKD at temperature T against the
    /// (averaged) teachers, on the rows with labels (it splits each row at its true class, so it has no <see cref="LogitRows"/>
    /// choice). mdistiller ramps this term in over its first epochs: give <paramref name="weight"/> a warm-up schedule for that.
    /// </summary>
    public DistillationObjectiveBuilder DecoupledKD(Schedule weight, double alpha = 1.0, double beta = 8.0, Schedule? temperature = null, bool standardizeLogits = false, string name = "dkd")
    {
        var probe = new DecoupledKDLoss(alpha, beta); // validates α and β now, not at Build()
        return Divergence(name, weight, temperature ?? 4.0, LogitRows.Labelled, () => new DecoupledKDLoss(probe.Alpha, probe.Beta) { StandardizeLogits = standardizeLogits });
    }

    /// <summary>
    /// DIST (<see cref="DistLoss"/>; Huang et al. 2022): β · inter-class + γ · intra-class Pearson-correlation losses at
    /// temperature T against the (averaged) teachers. A batch-level term: it needs several rows per batch.
    /// </summary>
    public DistillationObjectiveBuilder Dist(Schedule weight, double beta = 1.0, double gamma = 1.0, Schedule? temperature = null, bool standardizeLogits = false,
        LogitRows rows = LogitRows.Labelled, string name = "dist")
    {
        var probe = new DistLoss(beta, gamma); // validates β and γ now
        ArgumentNullException.ThrowIfNull(temperature ??= 1.0);
        RequireInRange(temperature, name, "temperature", double.Epsilon, double.PositiveInfinity);
        RequireWeight(weight, name);
        RequireRows(rows);
        return Add(teacherWeights =>
        {
            VocabularyAlignment? alignment = _alignment; // as set when Build() runs
            var loss = new DistLoss(probe.Beta, probe.Gamma) { StandardizeLogits = standardizeLogits };
            return new ObjectiveTerm(name, weight, c =>
            {
                double t = temperature.ValueAt(c.Step);
                (Tensor student, Tensor teacher) = StudentAndTeacherLogits(name, alignment, c, teacherWeights, t);
                return loss.forward(student, teacher, RowMask(student, c), RowLabels(rows, c), t);
            }, loss) { NeedsTeacherLogits = true, Temperature = temperature };
        });
    }

    /// <summary>The student's logits and the teachers' (aligned, then averaged at temperature <paramref name="t"/>) for a term that needs full teacher logits.</summary>
    private static (Tensor Student, Tensor Teacher) StudentAndTeacherLogits(string name, VocabularyAlignment? alignment, DistillationContext c, double[] teacherWeights, double t)
    {
        double[] w = teacherWeights.Length == c.Teachers.Count ? teacherWeights : Enumerable.Repeat(1.0, c.Teachers.Count).ToArray();
        (Tensor student, Tensor[] teachers) = Aligned(name, alignment, c.Student.Logits, c.Teachers.Select(o => o.Logits).ToArray());
        return (student, TeacherEnsemble.AverageSoftened(teachers, w, t));
    }

    /// <summary>Reverse KL (<see cref="ReverseKLLoss"/>) against the (averaged) teachers.</summary>
    public DistillationObjectiveBuilder ReverseKL(Schedule weight, Schedule? temperature = null, LogitRows rows = LogitRows.Labelled, string name = "reverse_kl") =>
        Divergence(name, weight, temperature ?? 1.0, rows, () => new ReverseKLLoss());

    /// <summary>Generalised Jensen-Shannon (<see cref="GeneralizedJensenShannonLoss"/>) with a β schedule.</summary>
    public DistillationObjectiveBuilder GeneralizedJensenShannon(Schedule weight, Schedule beta, Schedule? temperature = null, bool normalize = false,
        LogitRows rows = LogitRows.Labelled, string name = "jsd")
    {
        ArgumentNullException.ThrowIfNull(beta);
        RequireInRange(beta, name, "β", 0, 1, nameof(beta));
        return Divergence(name, weight, temperature ?? 1.0, rows, () => new GeneralizedJensenShannonLoss(0.5, 1.0, normalize), mixture: beta);
    }

    /// <summary>Total variation distance (<see cref="TotalVariationLoss"/>) against the (averaged) teachers.</summary>
    public DistillationObjectiveBuilder TotalVariation(Schedule weight, Schedule? temperature = null, LogitRows rows = LogitRows.Labelled, string name = "tvd") =>
        Divergence(name, weight, temperature ?? 1.0, rows, () => new TotalVariationLoss());

    /// <summary>DistiLLM's α-skew KL, or with <paramref name="reverse"/> the α-skew reverse KL (<see cref="SkewKLLoss"/>), with an α schedule.</summary>
    public DistillationObjectiveBuilder SkewKL(Schedule weight, Schedule alpha, bool reverse = false, Schedule? temperature = null, LogitRows rows = LogitRows.Labelled, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(alpha);
        string term = name ?? (reverse ? "skew_reverse_kl" : "skew_kl");
        RequireInRange(alpha, term, "α", 0, Math.BitDecrement(1.0), nameof(alpha));
        return Divergence(term, weight, temperature ?? 1.0, rows, () => new SkewKLLoss(0.1, reverse), mixture: alpha);
    }

    /// <summary>Hard targets: <see cref="HardTargetCrossEntropyLoss"/> of the student against the batch's labels.</summary>
    public DistillationObjectiveBuilder HardTargets(Schedule weight, double labelSmoothing = 0, string name = "hard")
    {
        LossInputs.RequireLabelSmoothing(labelSmoothing, nameof(labelSmoothing)); // now, not at Build()
        RequireWeight(weight, name);
        return Add(_ =>
        {
            var loss = new HardTargetCrossEntropyLoss(labelSmoothing: labelSmoothing);
            return new ObjectiveTerm(name, weight, c =>
            {
                Tensor labels = c.Labels ?? throw new InvalidOperationException($"Term \"{name}\" needs labels, but the batch has none.");
                return loss.forward(c.Student.Logits, labels, RowMask(c.Student.Logits, c));
            }, loss, usesTeachers: false);
        });
    }

    /// <summary>
    /// A divergence term. The loss module is the term's own and is never changed after it is made: each step's temperature
    /// and mixture weight travel with the call, so an objective can serve several trainers or threads at once.
    /// </summary>
    private DistillationObjectiveBuilder Divergence(string name, Schedule weight, Schedule temperature, LogitRows rows, Func<LogitDistillationLoss> create, Schedule? mixture = null)
    {
        ArgumentNullException.ThrowIfNull(temperature);
        RequireInRange(temperature, name, "temperature", double.Epsilon, double.PositiveInfinity);
        RequireWeight(weight, name);
        RequireRows(rows);
        return Add(teacherWeights =>
        {
            VocabularyAlignment? alignment = _alignment; // as set when Build() runs
            LogitDistillationLoss loss = create();
            var topK = new TopKSoftTargetLoss(loss.ScaleByTemperatureSquared, loss.IgnoreIndex) { Reduction = loss.Reduction };
            return new ObjectiveTerm(name, weight, c =>
            {
                double t = temperature.ValueAt(c.Step);
                double? mix = mixture?.ValueAt(c.Step);
                if (loss is DecoupledKDLoss && c.Labels is null)
                {
                    throw new InvalidOperationException($"Term \"{name}\" (DKD) needs labels: it splits each row at its true class, but the batch has none.");
                }
                Tensor? labels = loss is DecoupledKDLoss ? c.Labels : RowLabels(rows, c);
                if (c.Teachers.Any(o => o.TopK is not null))
                {
                    if (loss.StandardizeLogits)
                    {
                        throw new InvalidOperationException($"Term \"{name}\" standardises logits, but a teacher cache holds probabilities of unstandardised logits; use a running teacher.");
                    }
                    return FromCache(name, loss, topK, c, t, labels);
                }
                (Tensor student, Tensor teacherLogits) = StudentAndTeacherLogits(name, alignment, c, teacherWeights, t);
                return loss.forward(student, teacherLogits, RowMask(student, c), labels, t, mix);
            }, loss) { NeedsTeacherLogits = true, AcceptsTopKTargets = loss is SoftTargetKLLoss, Temperature = temperature };
        });
    }

    /// <summary>The labels that drop rows: the batch's for <see cref="LogitRows.Labelled"/>, none for <see cref="LogitRows.EveryToken"/> (the mask alone decides).</summary>
    private static Tensor? RowLabels(LogitRows rows, DistillationContext c) => rows == LogitRows.Labelled ? c.Labels : null;

    private static void RequireRows(LogitRows rows)
    {
        if (!Enum.IsDefined(rows)) throw new ArgumentOutOfRangeException(nameof(rows), rows, $"rows must be LogitRows.Labelled or LogitRows.EveryToken; got {rows}.");
    }

    /// <summary>The student's and teachers' logits cut to the alignment's shared size; without an alignment, different widths are an error naming both.</summary>
    private static (Tensor Student, Tensor[] Teachers) Aligned(string name, VocabularyAlignment? alignment, Tensor student, Tensor[] teachers)
    {
        if (alignment is not null)
        {
            return (alignment.Apply(student, "student's"), teachers.Select((t, i) => alignment.Apply(t, $"teacher {i}'s")).ToArray());
        }
        long width = student.shape[^1];
        int other = Array.FindIndex(teachers, t => t.shape.Length == student.shape.Length && t.shape[..^1].SequenceEqual(student.shape[..^1]) && t.shape[^1] != width);
        if (other >= 0)
        {
            throw new InvalidOperationException(
                $"Term \"{name}\": the student's logits have {width} entries per row but teacher {other}'s have {teachers[other].shape[^1]}. " +
                "If the two vocabularies differ only by padding rows, align them with AlignVocabularies(VocabularyAlignment.Between(studentTokenizer, teacherTokenizer, " +
                $"{width}, {teachers[other].shape[^1]})), which checks that the tokenizers agree; otherwise the models use different tokenizers and cannot be compared token by token.");
        }
        return (student, teachers);
    }

    /// <summary>Soft targets from a teacher cache: only forward KL from a single cached teacher, at the cache's temperature.</summary>
    private static Tensor FromCache(string name, LogitDistillationLoss loss, TopKSoftTargetLoss topK, DistillationContext c, double temperature, Tensor? labels)
    {
        if (loss is not SoftTargetKLLoss || c.Teachers.Count != 1)
        {
            throw new InvalidOperationException(
                $"Term \"{name}\" ({loss.GetType().Name}) cannot read a cached teacher: a teacher cache serves soft-target KL (SoftTargets) from one teacher only.");
        }
        TopKTargets targets = c.Teachers[0].TopK!;
        if (Math.Abs(targets.Temperature - temperature) > 1e-9 * temperature)
        {
            throw new InvalidOperationException(
                $"Term \"{name}\" runs at temperature {temperature} but the teacher cache was written at temperature {targets.Temperature}; they must match.");
        }
        return topK.forward(c.Student.Logits, targets, RowMask(c.Student.Logits, c), labels);
    }
}
