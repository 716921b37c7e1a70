using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

/// <summary>
/// One named, weighted part of a <see cref="DistillationObjective"/>. <see cref="Compute"/> returns the term's
/// unweighted value; the objective multiplies it by <see cref="Weight"/> at the current step.
/// </summary>
public sealed class ObjectiveTerm
{
    /// <summary>Creates a term.</summary>
    /// <param name="name">Unique name, used in step reports.</param>
    /// <param name="weight">The weight schedule (a number converts to a constant schedule).</param>
    /// <param name="compute">Computes the unweighted value from the context.</param>
    /// <param name="module">A module holding the term's learnable parameters (e.g. projections), trained with the student; or null.</param>
    /// <param name="studentNeeds">What the term needs from the student's forward pass.</param>
    /// <param name="teacherNeeds">What the term needs from the teachers' forward passes.</param>
    /// <param name="usesTeachers">False for terms that never read a teacher's output (the hard-label term): when no term does, the trainer skips the teachers' forward passes.</param>
    public ObjectiveTerm(string name, Schedule weight, Func<DistillationContext, Tensor> compute, nn.Module? module = null, OutputRequest? studentNeeds = null, OutputRequest? teacherNeeds = null, bool usesTeachers = true)
    {
        UsesTeachers = usesTeachers;
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        Weight = weight ?? throw new ArgumentNullException(nameof(weight));
        foreach (double value in weight.Extremes)
        {
            if (!double.IsFinite(value) || value < 0) throw new ArgumentException($"Term \"{name}\": the weight must be a finite number, 0 or more; got {value} (schedule {weight}).", nameof(weight));
        }
        Compute = compute ?? throw new ArgumentNullException(nameof(compute));
        Module = module;
        StudentNeeds = studentNeeds ?? OutputRequest.LogitsOnly;
        TeacherNeeds = teacherNeeds ?? OutputRequest.LogitsOnly;
    }

    /// <summary>The term's name.</summary>
    public string Name { get; }

    /// <summary>The weight schedule.</summary>
    public Schedule Weight { get; }

    /// <summary>Computes the unweighted value.</summary>
    public Func<DistillationContext, Tensor> Compute { get; }

    /// <summary>The term's learnable parameters, or null.</summary>
    public nn.Module? Module { get; }

    /// <summary>Student outputs the term reads.</summary>
    public OutputRequest StudentNeeds { get; }

    /// <summary>Teacher outputs the term reads.</summary>
    public OutputRequest TeacherNeeds { get; }

    /// <summary>Whether the term reads any teacher output.</summary>
    public bool UsesTeachers { get; }

    /// <summary>The one teacher the term reads (intermediate terms), or null when it reads every teacher or it is not known.</summary>
    public int? Teacher { get; init; }

    /// <summary>Whether the term reads the teachers' full logits (logit terms); checked against each teacher when the trainer is constructed.</summary>
    public bool NeedsTeacherLogits { get; init; }

    /// <summary>Whether the term can read a cached teacher's top-k targets instead of logits (soft-target KL from one teacher).</summary>
    public bool AcceptsTopKTargets { get; init; }

    /// <summary>The term's temperature schedule, when it has one; a cached teacher must have been written at its temperature.</summary>
    public Schedule? Temperature { get; init; }
}

/// <summary>One step's objective: the weighted total to minimise and each term's unweighted value and weight.</summary>
/// <param name="Total">Σ weight × value.</param>
/// <param name="Terms">Per term: its unweighted value (a scalar tensor) and the weight it had at this step.</param>
public sealed record ObjectiveResult(Tensor Total, IReadOnlyList<(string Name, Tensor Value, double Weight)> Terms);
