using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Students;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

/// <summary>
/// Composes a <see cref="DistillationObjective"/> from named terms. Weights and temperatures accept a number or a
/// <see cref="Schedule"/>. With several teachers, logit terms distil from their averaged softened distribution
/// (optionally weighted) and intermediate terms name the teacher they match (<c>teacher</c>, default 0).
/// </summary>
public sealed class DistillationObjectiveBuilder
{
    private readonly List<ObjectiveTerm> _terms = [];
    private double[] _teacherWeights = [1.0];

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

    /// <summary>Soft targets: <see cref="SoftTargetKLLoss"/> between the student and the (averaged) teachers, rows masked by labels and mask.</summary>
    public DistillationObjectiveBuilder SoftTargets(Schedule weight, Schedule? temperature = null, bool scaleByTemperatureSquared = true, string name = "soft") =>
        Divergence(name, weight, temperature ?? 2.0, new SoftTargetKLLoss(2.0, scaleByTemperatureSquared), null);

    /// <summary>Reverse KL (<see cref="ReverseKLLoss"/>) against the (averaged) teachers.</summary>
    public DistillationObjectiveBuilder ReverseKL(Schedule weight, Schedule? temperature = null, string name = "reverse_kl") =>
        Divergence(name, weight, temperature ?? 1.0, new ReverseKLLoss(), null);

    /// <summary>Generalised Jensen-Shannon (<see cref="GeneralizedJensenShannonLoss"/>) with a β schedule.</summary>
    public DistillationObjectiveBuilder GeneralizedJensenShannon(Schedule weight, Schedule beta, Schedule? temperature = null, bool normalize = false, string name = "jsd")
    {
        ArgumentNullException.ThrowIfNull(beta);
        var loss = new GeneralizedJensenShannonLoss(0.5, 1.0, normalize);
        return Divergence(name, weight, temperature ?? 1.0, loss, step => loss.Beta = beta.ValueAt(step));
    }

    /// <summary>Hard targets: <see cref="HardTargetCrossEntropyLoss"/> of the student against the batch's labels.</summary>
    public DistillationObjectiveBuilder HardTargets(Schedule weight, double labelSmoothing = 0, string name = "hard")
    {
        var loss = new HardTargetCrossEntropyLoss(labelSmoothing: labelSmoothing);
        return Term(new ObjectiveTerm(name, weight, c =>
        {
            Tensor labels = c.Labels ?? throw new InvalidOperationException($"Term \"{name}\" needs labels, but the batch has none.");
            return loss.forward(c.Student.Logits, labels, RowMaskFor(c.Student.Logits, c.Mask));
        }, loss, usesTeachers: false));
    }

    /// <summary>Cosine loss between matched hidden states (DistilBERT's term); projections when widths differ.</summary>
    public DistillationObjectiveBuilder HiddenStateCosine(Schedule weight, LayerMap map, int teacher = 0, string name = "cosine") =>
        Hidden(name, weight, map, teacher, map?.CreateCosineLosses());

    /// <summary>MSE between matched hidden states (TinyBERT's term); projections when widths differ.</summary>
    public DistillationObjectiveBuilder HiddenStateMse(Schedule weight, LayerMap map, int teacher = 0, string name = "hidden_mse") =>
        Hidden(name, weight, map, teacher, map?.CreateHiddenStateMseLosses());

    /// <summary>MSE between matched attention maps (TinyBERT's term), probabilities or pre-softmax scores.</summary>
    public DistillationObjectiveBuilder AttentionMse(Schedule weight, LayerMap map, AttentionMapKind kind = AttentionMapKind.Scores, int teacher = 0, string name = "attention_mse")
    {
        ArgumentNullException.ThrowIfNull(map);
        var loss = new AttentionMseLoss(kind);
        bool scores = kind == AttentionMapKind.Scores;
        var needs = new OutputRequest(AttentionScores: scores, AttentionProbabilities: !scores);
        return Term(new ObjectiveTerm(name, weight, c =>
        {
            ModelOutput t = TeacherOutput(c, teacher, name);
            IReadOnlyList<Tensor> studentMaps = (scores ? c.Student.AttentionScores : c.Student.AttentionProbabilities) ?? throw Missing(name, "student attention");
            IReadOnlyList<Tensor> teacherMaps = (scores ? t.AttentionScores : t.AttentionProbabilities) ?? throw Missing(name, "teacher attention");
            Tensor? padding = c.Student.AttentionMask;
            return map.AttentionIndices.Select(p => loss.forward(studentMaps[p.Student], teacherMaps[p.Teacher], padding)).Aggregate((a, b) => a + b) / map.AttentionIndices.Count;
        }, loss, needs, needs));
    }

    /// <summary>A user-defined term. Pass the module holding its learnable parameters, if any, so they are trained and saved.</summary>
    public DistillationObjectiveBuilder Term(string name, Schedule weight, Func<DistillationContext, Tensor> compute, nn.Module? module = null, OutputRequest? studentNeeds = null, OutputRequest? teacherNeeds = null, bool usesTeachers = true) =>
        Term(new ObjectiveTerm(name, weight, compute, module, studentNeeds, teacherNeeds, usesTeachers));

    /// <summary>Adds a prepared term.</summary>
    public DistillationObjectiveBuilder Term(ObjectiveTerm term)
    {
        ArgumentNullException.ThrowIfNull(term);
        _terms.Add(term);
        return this;
    }

    /// <summary>The objective.</summary>
    public DistillationObjective Build() => new(_terms);

    private DistillationObjectiveBuilder Divergence(string name, Schedule weight, Schedule temperature, LogitDistillationLoss loss, Action<long>? beforeStep)
    {
        ArgumentNullException.ThrowIfNull(temperature);
        var topK = new TopKSoftTargetLoss(loss.ScaleByTemperatureSquared, loss.IgnoreIndex);
        return Term(new ObjectiveTerm(name, weight, c =>
        {
            double[] teacherWeights = _teacherWeights;
            double t = temperature.ValueAt(c.Step);
            loss.Temperature = t;
            beforeStep?.Invoke(c.Step);
            if (c.Teachers.Count != teacherWeights.Length && teacherWeights.Length > 1)
            {
                throw new InvalidOperationException($"Term \"{name}\" has {teacherWeights.Length} teacher weights but the trainer has {c.Teachers.Count} teachers.");
            }
            if (c.Teachers.Any(o => o.TopK is not null)) return FromCache(name, loss, topK, c, t);
            double[] w = teacherWeights.Length == c.Teachers.Count ? teacherWeights : Enumerable.Repeat(1.0, c.Teachers.Count).ToArray();
            Tensor teacherLogits = TeacherEnsemble.AverageSoftened(c.Teachers.Select(o => o.Logits).ToArray(), w, t);
            return loss.forward(c.Student.Logits, teacherLogits, RowMaskFor(c.Student.Logits, c.Mask), c.Labels);
        }, loss));
    }

    private DistillationObjectiveBuilder Hidden<TLoss>(string name, Schedule weight, LayerMap map, int teacher, IReadOnlyList<TLoss>? losses) where TLoss : HiddenStateLoss
    {
        ArgumentNullException.ThrowIfNull(map);
        TLoss[] perPair = losses!.ToArray();
        var holder = nn.ModuleList<TLoss>(perPair);
        var needs = new OutputRequest(HiddenStates: true);
        return Term(new ObjectiveTerm(name, weight, c =>
        {
            ModelOutput t = TeacherOutput(c, teacher, name);
            IReadOnlyList<Tensor> s = c.Student.HiddenStates ?? throw Missing(name, "student hidden states");
            IReadOnlyList<Tensor> th = t.HiddenStates ?? throw Missing(name, "teacher hidden states");
            Tensor? tokens = c.Student.AttentionMask ?? c.Mask;
            var indices = map.HiddenStateIndices;
            return indices.Select((p, i) => perPair[i].forward(s[p.Student], th[p.Teacher], RowMaskFor(s[p.Student], tokens))).Aggregate((a, b) => a + b) / indices.Count;
        }, holder, needs, needs));
    }

    /// <summary>The mask applies only when it has one entry per row of <paramref name="values"/>.</summary>
    private static Tensor? RowMaskFor(Tensor values, Tensor? mask) =>
        mask is not null && mask.shape.SequenceEqual(values.shape[..^1]) ? mask : null;

    /// <summary>Soft targets from a teacher cache: only forward KL from a single cached teacher, at the cache's temperature.</summary>
    private static Tensor FromCache(string name, LogitDistillationLoss loss, TopKSoftTargetLoss topK, DistillationContext c, double temperature)
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
        topK.ScaleByTemperatureSquared = loss.ScaleByTemperatureSquared;
        return topK.forward(c.Student.Logits, targets, RowMaskFor(c.Student.Logits, c.Mask), c.Labels);
    }

    private static ModelOutput TeacherOutput(DistillationContext c, int teacher, string name) =>
        teacher >= 0 && teacher < c.Teachers.Count
            ? c.Teachers[teacher]
            : throw new InvalidOperationException($"Term \"{name}\" matches teacher {teacher}, but there are {c.Teachers.Count} teacher(s).");

    private static InvalidOperationException Missing(string name, string what) =>
        new($"Term \"{name}\" needs the {what}, but the model did not return them; use a model that can (see docs/models.md).");
}
