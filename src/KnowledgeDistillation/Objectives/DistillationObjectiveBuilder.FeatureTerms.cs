using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

// The feature terms: hidden states, attention maps, MiniLM relations and captured CNN feature maps matched layer to layer.
public sealed partial class DistillationObjectiveBuilder
{
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
    /// <param name="loss">Creates the loss (e.g. <see cref="AttentionMseLoss.TinyBert"/>); default <c>new AttentionMseLoss(kind)</c>.</param>
    /// <param name="name">The term's name.</param>
    public DistillationObjectiveBuilder AttentionMse(Schedule weight, LayerMap map, AttentionMapKind kind = AttentionMapKind.Scores, int teacher = 0,
        Func<AttentionMseLoss>? loss = null, string name = "attention_mse")
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
}
