using KnowledgeDistillation.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

/// <summary>
/// A distillation objective: named, weighted terms over teacher outputs, the student output and the batch,
/// total = Σ weight_i(step) · term_i. Build one with <see cref="Create"/>:
/// <code>
/// var objective = DistillationObjective.Create()
///     .SoftTargets(weight: 0.9, temperature: 2.0)
///     .HardTargets(weight: 0.1)
///     .Build();
/// </code>
/// It is a module: the learnable parts of its terms (hidden-state projections) are its parameters, which the
/// trainer optimises with the student's and saves in checkpoints.
/// </summary>
public sealed class DistillationObjective : nn.Module
{
    private readonly ModuleList<nn.Module> term_modules;
    private readonly ObjectiveTerm[] _terms;

    internal DistillationObjective(IReadOnlyList<ObjectiveTerm> terms, IReadOnlyList<double> teacherWeights) : base(nameof(DistillationObjective))
    {
        TeacherWeights = teacherWeights;
        if (terms.Count == 0) throw new ArgumentException("An objective needs at least one term.", nameof(terms));
        string? duplicate = terms.GroupBy(t => t.Name).Where(g => g.Count() > 1).Select(g => g.Key).FirstOrDefault();
        if (duplicate is not null) throw new ArgumentException($"Two terms are named \"{duplicate}\"; term names must be unique.", nameof(terms));
        _terms = terms.ToArray();
        term_modules = nn.ModuleList(terms.Where(t => t.Module is not null).Select(t => t.Module!).ToArray());
        RegisterComponents();
        // Terms are fixed once built, so what they need is worked out once rather than on every micro-batch.
        StudentRequest = Merge(_terms.Select(t => t.StudentNeeds));
        TeacherRequest = Merge(_terms.Select(t => t.TeacherNeeds));
        UsesTeachers = _terms.Any(t => t.UsesTeachers);
    }

    /// <summary>Starts building an objective.</summary>
    public static DistillationObjectiveBuilder Create() => new();

    /// <summary>The teachers' weights in logit terms (one entry: every teacher weighs the same).</summary>
    public IReadOnlyList<double> TeacherWeights { get; }

    /// <summary>The terms, in the order they were added.</summary>
    public IReadOnlyList<ObjectiveTerm> Terms => _terms;

    /// <summary>What the student's forward pass must return for these terms.</summary>
    public OutputRequest StudentRequest { get; }

    /// <summary>Whether any term reads a teacher's output; when none does, the trainer does not run the teachers.</summary>
    public bool UsesTeachers { get; }

    /// <summary>What the teachers' forward passes must return for these terms.</summary>
    public OutputRequest TeacherRequest { get; }

    /// <summary>Computes every term and the weighted total. Terms with weight 0 at this step are skipped.</summary>
    public ObjectiveResult Compute(DistillationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Tensor? total = null;
        var values = new List<(string, Tensor, double)>(_terms.Length);
        foreach (ObjectiveTerm term in _terms)
        {
            double weight = term.Weight.ValueAt(context.Step);
            if (weight == 0) continue;
            Tensor value = term.Compute(context);
            if (value.numel() != 1)
            {
                throw new InvalidOperationException($"Term \"{term.Name}\" returned a tensor of shape [{string.Join(", ", value.shape)}]; a term must return a scalar.");
            }
            values.Add((term.Name, value, weight));
            Tensor weighted = value.to(ScalarType.Float32) * weight;
            total = total is null ? weighted : total + weighted;
        }
        if (total is null) throw new InvalidOperationException($"Every term of the objective has weight 0 at step {context.Step}.");
        return new ObjectiveResult(total, values);
    }

    /// <summary>
    /// Checks that teachers providing <paramref name="teachers"/> can serve every term: the teacher-weight count, each
    /// term's teacher index, hidden states and attention where a term needs them, full logits or (for soft targets
    /// from one teacher) top-k targets at the term's temperature.
    /// </summary>
    /// <param name="teachers">Per teacher: what its outputs hold, and the temperature of its top-k targets when it serves them.</param>
    /// <exception cref="ArgumentException">A term cannot be served; the message names the term and the teacher.</exception>
    /// <param name="parameter">The name the caller gave the teachers (a trainer's <c>teacher</c> or <c>teachers</c>), for the exceptions.</param>
    internal void ValidateTeachers(IReadOnlyList<(ModelOutputKinds Provides, double? TopKTemperature)> teachers, string parameter = "teachers")
    {
        if (TeacherWeights.Count > 1 && TeacherWeights.Count != teachers.Count)
        {
            throw new ArgumentException($"The objective has {TeacherWeights.Count} teacher weights (TeacherWeights) but the trainer was given {teachers.Count} teachers.", parameter);
        }
        foreach (ObjectiveTerm term in _terms.Where(t => t.UsesTeachers))
        {
            if (term.Teacher is int index && index >= teachers.Count)
            {
                throw new ArgumentException($"Term \"{term.Name}\" matches teacher {index}, but the trainer was given {teachers.Count} teacher(s).", parameter);
            }
            IEnumerable<int> read = term.Teacher is int one ? [one] : Enumerable.Range(0, teachers.Count);
            foreach (int k in read)
            {
                ModelOutputKinds provides = teachers[k].Provides;
                ModelOutputKinds missing = term.TeacherNeeds.Needs() & ~provides;
                if (missing != ModelOutputKinds.None)
                {
                    throw new ArgumentException($"Term \"{term.Name}\" needs {missing} from teacher {k}, which provides only {provides}.", parameter);
                }
                if (!term.NeedsTeacherLogits || provides.HasFlag(ModelOutputKinds.Logits)) continue;
                if (!provides.HasFlag(ModelOutputKinds.TopKTargets) || !term.AcceptsTopKTargets || teachers.Count != 1)
                {
                    throw new ArgumentException(
                        $"Term \"{term.Name}\" needs teacher {k}'s logits, which provides only {provides}. A teacher cache serves soft-target KL (SoftTargets) from one teacher only.",
                        parameter);
                }
                double start = term.Temperature?.ValueAt(0) ?? double.NaN;
                if (teachers[k].TopKTemperature is double fixedAt && term.Temperature is { IsConstant: false } changing)
                {
                    // The cache holds the teacher at one temperature: a schedule would pass construction and fail at the first step it moves.
                    throw new ArgumentException(
                        $"Term \"{term.Name}\" has a temperature schedule ({string.Join(" to ", changing.Extremes)}), but teacher {k}'s cache was written at one temperature ({fixedAt}): " +
                        "a cached teacher needs a constant temperature equal to the cache's.", parameter);
                }
                if (teachers[k].TopKTemperature is double cached && !(Math.Abs(cached - start) <= 1e-9 * cached))
                {
                    throw new ArgumentException(
                        $"Term \"{term.Name}\" runs at temperature {start} but teacher {k}'s cache was written at temperature {cached}; they must match.", parameter);
                }
            }
        }
    }

    private static OutputRequest Merge(IEnumerable<OutputRequest> requests) =>
        requests.Aggregate(OutputRequest.LogitsOnly, (a, b) => new OutputRequest(
            a.HiddenStates || b.HiddenStates, a.AttentionScores || b.AttentionScores, a.AttentionProbabilities || b.AttentionProbabilities,
            a.QueryKeyValues || b.QueryKeyValues));
}
