using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

/// <summary>
/// Composes a <see cref="DistillationObjective"/> from named terms. Weights and temperatures accept a number or a
/// <see cref="Schedule"/>. With several teachers, logit terms distil from their averaged softened distribution
/// (optionally weighted) and intermediate terms name the teacher they match (<c>teacher</c>, default 0).
/// </summary>
public sealed partial class DistillationObjectiveBuilder
{

    // Each entry builds its term anew, so every Build() gets its own loss modules and projections.
    private readonly List<Func<double[], ObjectiveTerm>> _terms = [];
    private double[] _teacherWeights = [1.0];
    private VocabularyAlignment? _alignment;

    /// <summary>Weights of several teachers in logit terms (normalised to sum to 1); the count must match the trainer's teachers.</summary>
    public DistillationObjectiveBuilder TeacherWeights(params double[] weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Length == 0 || weights.Any(w => !(w >= 0) || double.IsInfinity(w)) || weights.Sum() <= 0)
        {
            throw new ArgumentException($"Teacher weights must be finite, non-negative and not all 0; got [{string.Join(", ", weights)}].", nameof(weights));
        }
        _teacherWeights = (double[])weights.Clone();
        return this;
    }

    /// <summary>
    /// Lets the divergence terms (soft targets, reverse KL, JSD) compare logits of different widths by cutting both to
    /// <see cref="VocabularyAlignment.SharedSize"/> (see <see cref="VocabularyAlignment.Between"/>). Without it, such
    /// logits are an error that names both sizes.
    /// </summary>
    public DistillationObjectiveBuilder AlignVocabularies(VocabularyAlignment alignment)
    {
        _alignment = alignment ?? throw new ArgumentNullException(nameof(alignment));
        return this;
    }

    /// <summary>The batch's mask when it has one entry per example of <paramref name="feature"/>; the student's token mask never applies to per-example features.</summary>
    private static Tensor? ExampleMask(Tensor feature, DistillationContext c)
    {
        if (c.Mask is not { } mask || ReferenceEquals(mask, c.Student.AttentionMask)) return null;
        if (mask.dim() == 1 && mask.shape[0] == feature.shape[0]) return mask;
        throw new ArgumentException($"The batch's mask has shape {Shapes.Describe(mask.shape)}, but per-example features {Shapes.Describe(feature.shape)} need one entry per example, [{feature.shape[0]}].", "mask");
    }

    /// <summary>A user-defined term. Pass the module holding its learnable parameters, if any, so they are trained and saved (it is shared by every objective this builder builds).</summary>
    public DistillationObjectiveBuilder Term(string name, Schedule weight, Func<DistillationContext, Tensor> compute, nn.Module? module = null, OutputRequest? studentNeeds = null, OutputRequest? teacherNeeds = null, bool usesTeachers = true) =>
        Term(new ObjectiveTerm(name, weight, compute, module, studentNeeds, teacherNeeds, usesTeachers));

    /// <summary>Adds a prepared term (shared, with its module, by every objective this builder builds).</summary>
    public DistillationObjectiveBuilder Term(ObjectiveTerm term)
    {
        ArgumentNullException.ThrowIfNull(term);
        return Add(_ => term);
    }

    /// <summary>
    /// The objective, with modules of its own: two objectives built from one builder share no parameters (except those
    /// of prepared terms and of user modules passed to <see cref="Term(string, Schedule, Func{DistillationContext, Tensor}, nn.Module?, OutputRequest?, OutputRequest?, bool)"/>).
    /// </summary>
    /// <exception cref="ArgumentException">A weight is negative or not finite, or two terms share a name.</exception>
    public DistillationObjective Build()
    {
        double[] teacherWeights = (double[])_teacherWeights.Clone();
        ObjectiveTerm[] terms = _terms.Select(create => create(teacherWeights)).ToArray();
        foreach (ObjectiveTerm term in terms) RequireInRange(term.Weight, term.Name, "weight", 0, double.PositiveInfinity);
        return new DistillationObjective(terms, teacherWeights);
    }

    /// <summary>A weight is checked where it is given, and named as the caller's parameter (not as the "value" of a schedule).</summary>
    private static void RequireWeight(Schedule weight, string term) => RequireInRange(weight, term, "weight", 0, double.PositiveInfinity, nameof(weight));

    private DistillationObjectiveBuilder Add(Func<double[], ObjectiveTerm> create)
    {
        _terms.Add(create);
        return this;
    }

    /// <summary>
    /// The mask logit terms use: the batch's mask, which must have one entry per row of <paramref name="logits"/> (an
    /// error naming both shapes otherwise); without one, the student's attention mask when it has one entry per row.
    /// </summary>
    private static Tensor? RowMask(Tensor logits, DistillationContext c)
    {
        long[] rows = logits.shape[..^1];
        if (c.Mask is { } mask)
        {
            if (mask.shape.SequenceEqual(rows)) return mask;
            // The context's fallback (the student's attention mask, one entry per token) does not apply to per-example logits.
            if (!ReferenceEquals(mask, c.Student.AttentionMask))
            {
                throw new ArgumentException(
                    $"The batch's mask has shape {Shapes.Describe(mask.shape)}, but the logits {Shapes.Describe(logits.shape)} need one entry per row, {Shapes.Describe(rows)}.", "mask");
            }
            return null;
        }
        return c.Student.AttentionMask is { } attention && attention.shape.SequenceEqual(rows) ? attention : null;
    }

    /// <summary>The mask hidden-state terms use: the batch's mask when it has one entry per token, else the student's attention mask when it does.</summary>
    private static Tensor? TokenMask(Tensor hidden, DistillationContext c)
    {
        long[] rows = hidden.shape[..^1];
        return c.Mask is { } mask && mask.shape.SequenceEqual(rows) ? mask
            : c.Student.AttentionMask is { } attention && attention.shape.SequenceEqual(rows) ? attention
            : null;
    }

    private static ModelOutput TeacherOutput(DistillationContext c, int teacher, string name) =>
        teacher >= 0 && teacher < c.Teachers.Count
            ? c.Teachers[teacher]
            : throw new InvalidOperationException($"Term \"{name}\" matches teacher {teacher}, but there are {c.Teachers.Count} teacher(s).");

    private static void RequireTeacherIndex(int teacher, string name)
    {
        if (teacher < 0) throw new ArgumentOutOfRangeException(nameof(teacher), teacher, $"Term \"{name}\": the teacher index must be 0 or more; got {teacher}.");
    }

    /// <summary>Checks the values a schedule passes through (its ends) against [min, max]; NaN and infinities never pass.</summary>
    private static void RequireInRange(Schedule schedule, string term, string what, double min, double max, string? parameter = null)
    {
        ArgumentNullException.ThrowIfNull(schedule, parameter ?? what);
        foreach (double value in schedule.Extremes)
        {
            if (!double.IsFinite(value) || value < min || value > max)
            {
                string range = max == double.PositiveInfinity ? (min > 0 ? "a finite number greater than 0" : $"a finite number, {min} or more") : $"in [{min}, {max}]";
                throw new ArgumentException($"Term \"{term}\": the {what} must be {range}; got {value} (schedule {schedule}).", parameter ?? what);
            }
        }
    }

    private static InvalidOperationException Missing(string name, string what) =>
        new($"Term \"{name}\" needs the {what}, but the model did not return them; use a model that can (see docs/models.md).");

}
