using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

/// <summary>
/// Composes a <see cref="DistillationObjective"/> from named terms. Weights and temperatures accept a number or a
/// <see cref="Schedule"/>. With several teachers, logit terms distil from their averaged softened distribution
/// (optionally weighted) and intermediate terms name the teacher they match (<c>teacher</c>, default 0).
/// </summary>
public sealed class DistillationObjectiveBuilder
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

    /// <summary>
    /// Soft targets: <see cref="SoftTargetKLLoss"/> between the student and the (averaged) teachers, rows masked by labels
    /// and mask; with <paramref name="standardizeLogits"/>, both models' logits are standardised per row first (Sun et al. 2024).
    /// </summary>
    public DistillationObjectiveBuilder SoftTargets(Schedule weight, Schedule? temperature = null, bool scaleByTemperatureSquared = true, string name = "soft", bool standardizeLogits = false) =>
        Divergence(name, weight, temperature ?? 2.0, () => (new SoftTargetKLLoss(2.0, scaleByTemperatureSquared) { StandardizeLogits = standardizeLogits }, null));

    /// <summary>
    /// Decoupled KD (<see cref="DecoupledKDLoss"/>; Zhao et al. 2022): α · TCKD + β · NCKD at temperature T against the
    /// (averaged) teachers, on the rows with labels. mdistiller ramps this term in over its first epochs: give
    /// <paramref name="weight"/> a warm-up schedule for that.
    /// </summary>
    public DistillationObjectiveBuilder DecoupledKD(Schedule weight, double alpha = 1.0, double beta = 8.0, Schedule? temperature = null, bool standardizeLogits = false, string name = "dkd")
    {
        var probe = new DecoupledKDLoss(alpha, beta); // validates α and β now, not at Build()
        return TeacherLogitTerm(name, weight, temperature ?? 4.0, () => new DecoupledKDLoss(probe.Alpha, probe.Beta) { StandardizeLogits = standardizeLogits },
            (loss, t) => loss.Temperature = t,
            (loss, student, teacher, c) =>
            {
                Tensor labels = c.Labels ?? throw new InvalidOperationException($"Term \"{name}\" (DKD) needs labels: it splits each row at its true class, but the batch has none.");
                return loss.forward(student, teacher, labels, RowMask(student, c));
            });
    }

    /// <summary>
    /// DIST (<see cref="DistLoss"/>; Huang et al. 2022): β · inter-class + γ · intra-class Pearson-correlation losses at
    /// temperature T against the (averaged) teachers. A batch-level term: it needs several rows per batch.
    /// </summary>
    public DistillationObjectiveBuilder Dist(Schedule weight, double beta = 1.0, double gamma = 1.0, Schedule? temperature = null, bool standardizeLogits = false, string name = "dist")
    {
        var probe = new DistLoss(beta, gamma); // validates β and γ now
        return TeacherLogitTerm(name, weight, temperature ?? 1.0, () => new DistLoss(probe.Beta, probe.Gamma) { StandardizeLogits = standardizeLogits },
            (loss, t) => loss.Temperature = t,
            (loss, student, teacher, c) => loss.forward(student, teacher, RowMask(student, c), c.Labels));
    }

    /// <summary>A term over the student's logits and the (aligned, averaged) teachers' at a scheduled temperature, for losses that need full teacher logits.</summary>
    private DistillationObjectiveBuilder TeacherLogitTerm<TLoss>(string name, Schedule weight, Schedule temperature, Func<TLoss> create, Action<TLoss, double> setTemperature,
        Func<TLoss, Tensor, Tensor, DistillationContext, Tensor> compute) where TLoss : nn.Module
    {
        RequireInRange(temperature, name, "temperature", double.Epsilon, double.PositiveInfinity);
        RequireWeight(weight, name);
        return Add(teacherWeights =>
        {
            VocabularyAlignment? alignment = _alignment; // as set when Build() runs
            TLoss loss = create();
            return new ObjectiveTerm(name, weight, c =>
            {
                double t = temperature.ValueAt(c.Step);
                setTemperature(loss, t);
                (Tensor student, Tensor teacher) = StudentAndTeacherLogits(name, alignment, c, teacherWeights, t);
                return compute(loss, student, teacher, c);
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
    public DistillationObjectiveBuilder ReverseKL(Schedule weight, Schedule? temperature = null, string name = "reverse_kl") =>
        Divergence(name, weight, temperature ?? 1.0, () => (new ReverseKLLoss(), null));

    /// <summary>Generalised Jensen-Shannon (<see cref="GeneralizedJensenShannonLoss"/>) with a β schedule.</summary>
    public DistillationObjectiveBuilder GeneralizedJensenShannon(Schedule weight, Schedule beta, Schedule? temperature = null, bool normalize = false, string name = "jsd")
    {
        ArgumentNullException.ThrowIfNull(beta);
        RequireInRange(beta, name, "β", 0, 1, nameof(beta));
        return Divergence(name, weight, temperature ?? 1.0, () =>
        {
            var loss = new GeneralizedJensenShannonLoss(0.5, 1.0, normalize);
            return (loss, step => loss.Beta = beta.ValueAt(step));
        });
    }

    /// <summary>Total variation distance (<see cref="TotalVariationLoss"/>) against the (averaged) teachers.</summary>
    public DistillationObjectiveBuilder TotalVariation(Schedule weight, Schedule? temperature = null, string name = "tvd") =>
        Divergence(name, weight, temperature ?? 1.0, () => (new TotalVariationLoss(), null));

    /// <summary>DistiLLM's α-skew KL, or with <paramref name="reverse"/> the α-skew reverse KL (<see cref="SkewKLLoss"/>), with an α schedule.</summary>
    public DistillationObjectiveBuilder SkewKL(Schedule weight, Schedule alpha, bool reverse = false, Schedule? temperature = null, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(alpha);
        string term = name ?? (reverse ? "skew_reverse_kl" : "skew_kl");
        RequireInRange(alpha, term, "α", 0, Math.BitDecrement(1.0), nameof(alpha));
        return Divergence(term, weight, temperature ?? 1.0, () =>
        {
            var loss = new SkewKLLoss(0.1, reverse);
            return (loss, step => loss.Alpha = alpha.ValueAt(step));
        });
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

    /// <summary>Cosine loss between matched hidden states (DistilBERT's term); projections when widths differ.</summary>
    public DistillationObjectiveBuilder HiddenStateCosine(Schedule weight, LayerMap map, int teacher = 0, string name = "cosine") =>
        Hidden(name, weight, map, teacher, (s, t) => new CosineEmbeddingLoss(s, t));

    /// <summary>MSE between matched hidden states (TinyBERT's term); projections when widths differ.</summary>
    public DistillationObjectiveBuilder HiddenStateMse(Schedule weight, LayerMap map, int teacher = 0, string name = "hidden_mse") =>
        Hidden(name, weight, map, teacher, (s, t) => new HiddenStateMseLoss(s, t));

    /// <summary>MSE between matched attention maps (TinyBERT's term), probabilities or pre-softmax scores.</summary>
    /// <param name="weight">The term's weight.</param>
    /// <param name="map">Which student layer's maps match which teacher layer's.</param>
    /// <param name="kind">Probabilities or pre-softmax scores.</param>
    /// <param name="teacher">The teacher whose maps are matched.</param>
    /// <param name="name">The term's name.</param>
    /// <param name="loss">Creates the loss (e.g. <see cref="AttentionMseLoss.TinyBert"/>); default <c>new AttentionMseLoss(kind)</c>.</param>
    public DistillationObjectiveBuilder AttentionMse(Schedule weight, LayerMap map, AttentionMapKind kind = AttentionMapKind.Scores, int teacher = 0, string name = "attention_mse",
        Func<AttentionMseLoss>? loss = null)
    {
        ArgumentNullException.ThrowIfNull(map);
        RequireTeacherIndex(teacher, name);
        bool scores = kind == AttentionMapKind.Scores;
        var needs = new OutputRequest(AttentionScores: scores, AttentionProbabilities: !scores);
        RequireWeight(weight, name);
        return Add(_ =>
        {
            AttentionMseLoss attention = loss?.Invoke() ?? new AttentionMseLoss(kind);
            return new ObjectiveTerm(name, weight, c =>
            {
                ModelOutput t = TeacherOutput(c, teacher, name);
                IReadOnlyList<Tensor> studentMaps = (scores ? c.Student.AttentionScores : c.Student.AttentionProbabilities) ?? throw Missing(name, "student attention");
                IReadOnlyList<Tensor> teacherMaps = (scores ? t.AttentionScores : t.AttentionProbabilities) ?? throw Missing(name, "teacher attention");
                Tensor? padding = c.Student.AttentionMask;
                return map.AttentionIndices.Select(p => attention.forward(studentMaps[p.Student], teacherMaps[p.Teacher], padding)).Aggregate((a, b) => a + b) / map.AttentionIndices.Count;
            }, attention, needs, needs) { Teacher = teacher };
        });
    }

    /// <summary>
    /// Attention transfer (<see cref="AttentionTransferLoss"/>; Zagoruyko and Komodakis 2017) between captured CNN feature
    /// maps <c>[N, C, H, W]</c>, averaged over the pairs (RepDistiller weights this term by 1000).
    /// </summary>
    public DistillationObjectiveBuilder AttentionTransfer(Schedule weight, IReadOnlyList<FeaturePair> pairs, double power = 2, int teacher = 0, string name = "attention_transfer")
    {
        _ = new AttentionTransferLoss(power); // validates p now
        return Features(name, weight, pairs, teacher, _ => new AttentionTransferLoss(power), (loss, s, t, mask, _) => loss.forward(s, t, mask));
    }

    /// <summary>
    /// A FitNets hint (<see cref="FeatureMapHintLoss"/>; Romero et al. 2015): a learned 1×1 regressor maps the student's
    /// captured map <c>[N, Cs, H, W]</c> to the teacher's <c>[N, Ct, H, W]</c>, MSE between them. The regressor trains
    /// with the student. (For hidden states <c>[N, D]</c>, use <see cref="HiddenStateMse"/> with a width-changing map.)
    /// </summary>
    public DistillationObjectiveBuilder FitNetsHint(Schedule weight, FeaturePair pair, long studentChannels, long teacherChannels, int teacher = 0, string name = "hint")
    {
        _ = new FeatureMapHintLoss(studentChannels, teacherChannels); // validates the channels now
        return Features(name, weight, [pair], teacher, _ => new FeatureMapHintLoss(studentChannels, teacherChannels), (loss, s, t, mask, _) => loss.forward(s, t, mask));
    }

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

    /// <summary>
    /// MiniLMv2's multi-head self-attention relation distillation (<see cref="MiniLMRelationLoss"/>; Wang et al. 2021):
    /// the Q-Q, K-K and V-V relations (or the chosen ones) of teacher layer <paramref name="teacherLayer"/> and student
    /// layer <paramref name="studentLayer"/> (positions in <c>ModelOutput.QueryKeyValues</c>, e.g. <c>^1</c> for the
    /// student's last layer), each re-split into <paramref name="relationHeads"/> relation heads so that head counts and
    /// widths may differ; the term is the sum of the chosen relations' KL divergences. The models must provide their
    /// queries, keys and values (the reference GPT, BERT and Llama-family models do).
    /// </summary>
    public DistillationObjectiveBuilder MiniLMRelations(Schedule weight, Index studentLayer, Index teacherLayer, int relationHeads,
        MiniLMRelations relations = Objectives.MiniLMRelations.All, int teacher = 0, string name = "minilm")
    {
        _ = new MiniLMRelationLoss(relationHeads); // validates R now
        if (relations == 0 || (relations & ~Objectives.MiniLMRelations.All) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(relations), relations, $"relations must combine QueryQuery, KeyKey and ValueValue; got {relations}.");
        }
        RequireTeacherIndex(teacher, name);
        var needs = new OutputRequest(QueryKeyValues: true);
        RequireWeight(weight, name);
        return Add(_ =>
        {
            var loss = new MiniLMRelationLoss(relationHeads);
            return new ObjectiveTerm(name, weight, c =>
            {
                SelfAttentionStates Layer(IReadOnlyList<SelfAttentionStates>? all, Index at, string whose)
                {
                    if (all is null) throw Missing(name, $"{whose} queries, keys and values");
                    int position = at.GetOffset(all.Count);
                    return position >= 0 && position < all.Count ? all[position]
                        : throw new InvalidOperationException($"Term \"{name}\" reads the {whose}'s layer {at}, but the {whose} has {all.Count} layer(s).");
                }
                SelfAttentionStates s = Layer(c.Student.QueryKeyValues, studentLayer, "student");
                SelfAttentionStates t = Layer(TeacherOutput(c, teacher, name).QueryKeyValues, teacherLayer, "teacher");
                Tensor? mask = TokenMask(s.Queries, c);
                var parts = new List<Tensor>(3);
                if (relations.HasFlag(Objectives.MiniLMRelations.QueryQuery)) parts.Add(loss.forward(s.Queries, t.Queries, mask));
                if (relations.HasFlag(Objectives.MiniLMRelations.KeyKey)) parts.Add(loss.forward(s.Keys, t.Keys, mask));
                if (relations.HasFlag(Objectives.MiniLMRelations.ValueValue)) parts.Add(loss.forward(s.Values, t.Values, mask));
                return parts.Aggregate((a, b) => a + b);
            }, loss, needs, needs) { Teacher = teacher };
        });
    }

    /// <summary>
    /// A term over pairs of captured features (<c>ModelOutput.HiddenStates</c> of the student and of teacher
    /// <paramref name="teacher"/>): one loss module per pair (holding any learned regressor), averaged over the pairs,
    /// with the batch's per-example mask when it has one.
    /// </summary>
    private DistillationObjectiveBuilder Features<TLoss>(string name, Schedule weight, IReadOnlyList<FeaturePair> pairs, int teacher,
        Func<FeaturePair, TLoss> create, Func<TLoss, Tensor, Tensor, Tensor?, DistillationContext, Tensor> compute) where TLoss : nn.Module
    {
        ArgumentNullException.ThrowIfNull(pairs);
        if (pairs.Count == 0) throw new ArgumentException($"Term \"{name}\" needs at least one feature pair.", nameof(pairs));
        RequireTeacherIndex(teacher, name);
        FeaturePair[] fixedPairs = [.. pairs];
        var needs = new OutputRequest(HiddenStates: true);
        RequireWeight(weight, name);
        return Add(_ =>
        {
            TLoss[] perPair = fixedPairs.Select(create).ToArray();
            var holder = nn.ModuleList<TLoss>(perPair);
            return new ObjectiveTerm(name, weight, c =>
            {
                IReadOnlyList<Tensor> s = c.Student.HiddenStates ?? throw Missing(name, "student features (hidden states)");
                IReadOnlyList<Tensor> t = TeacherOutput(c, teacher, name).HiddenStates ?? throw Missing(name, "teacher features (hidden states)");
                Tensor Feature(IReadOnlyList<Tensor> all, Index at, string whose)
                {
                    int position = at.GetOffset(all.Count);
                    return position >= 0 && position < all.Count ? all[position]
                        : throw new InvalidOperationException($"Term \"{name}\" reads the {whose} feature {at}, but the {whose} has {all.Count} captured feature(s).");
                }
                return fixedPairs.Select((p, i) =>
                {
                    Tensor student = Feature(s, p.Student, "student"), teacherFeature = Feature(t, p.Teacher, "teacher");
                    return compute(perPair[i], student, teacherFeature, ExampleMask(student, c), c);
                }).Aggregate((a, b) => a + b) / fixedPairs.Length;
            }, holder, needs, needs) { Teacher = teacher };
        });
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

    private DistillationObjectiveBuilder Divergence(string name, Schedule weight, Schedule temperature, Func<(LogitDistillationLoss Loss, Action<long>? BeforeStep)> create)
    {
        ArgumentNullException.ThrowIfNull(temperature);
        RequireInRange(temperature, name, "temperature", double.Epsilon, double.PositiveInfinity);
        RequireWeight(weight, name);
        return Add(teacherWeights =>
        {
            VocabularyAlignment? alignment = _alignment; // as set when Build() runs
            (LogitDistillationLoss loss, Action<long>? beforeStep) = create();
            var topK = new TopKSoftTargetLoss(loss.ScaleByTemperatureSquared, loss.IgnoreIndex);
            return new ObjectiveTerm(name, weight, c =>
            {
                double t = temperature.ValueAt(c.Step);
                loss.Temperature = t;
                beforeStep?.Invoke(c.Step);
                if (c.Teachers.Any(o => o.TopK is not null))
                {
                    if (loss.StandardizeLogits)
                    {
                        throw new InvalidOperationException($"Term \"{name}\" standardises logits, but a teacher cache holds probabilities of unstandardised logits; use a running teacher.");
                    }
                    return FromCache(name, loss, topK, c, t);
                }
                (Tensor student, Tensor teacherLogits) = StudentAndTeacherLogits(name, alignment, c, teacherWeights, t);
                return loss.forward(student, teacherLogits, RowMask(student, c), c.Labels);
            }, loss) { NeedsTeacherLogits = true, AcceptsTopKTargets = loss is SoftTargetKLLoss, Temperature = temperature };
        });
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

    // create makes one pair's loss from (student width, teacher width), both null when no projection is needed.
    private DistillationObjectiveBuilder Hidden<TLoss>(string name, Schedule weight, LayerMap map, int teacher, Func<long?, long?, TLoss> create) where TLoss : HiddenStateLoss
    {
        ArgumentNullException.ThrowIfNull(map);
        RequireTeacherIndex(teacher, name);
        var needs = new OutputRequest(HiddenStates: true);
        RequireWeight(weight, name);
        return Add(_ =>
        {
            TLoss[] perPair = map.HiddenStateIndices
                .Select(_ => map.NeedsProjection ? create(map.StudentWidth, map.TeacherWidth) : create(null, null)).ToArray();
            var holder = nn.ModuleList<TLoss>(perPair);
            return new ObjectiveTerm(name, weight, c =>
            {
                ModelOutput t = TeacherOutput(c, teacher, name);
                IReadOnlyList<Tensor> s = c.Student.HiddenStates ?? throw Missing(name, "student hidden states");
                IReadOnlyList<Tensor> th = t.HiddenStates ?? throw Missing(name, "teacher hidden states");
                var indices = map.HiddenStateIndices;
                // The batch's mask first (when it has one entry per token), then the student's attention mask, as documented.
                return indices.Select((p, i) => perPair[i].forward(s[p.Student], th[p.Teacher], TokenMask(s[p.Student], c))).Aggregate((a, b) => a + b) / indices.Count;
            }, holder, needs, needs) { Teacher = teacher };
        });
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
        topK.Reduction = loss.Reduction;
        return topK.forward(c.Student.Logits, targets, RowMask(c.Student.Logits, c), c.Labels);
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
