using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>
/// MiniLM's relation loss against a double-precision reference of the MiniLMv2 formula, the reference transformers'
/// queries, keys and values against their own projections, and the MiniLMRelations objective term.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public class MiniLMRelationTests
{
    /// <summary>Per relation head r: softmax_j(x_i,r · x_j,r / √d_r) over the kept keys; KL(teacher ‖ student) averaged over heads and kept queries.</summary>
    private static double Reference(double[] s, int ds, double[] t, int dt, int batch, int length, int heads, bool[]? keep)
    {
        double[] Relation(double[] x, int width, int b, int r, int i)
        {
            int d = width / heads;
            var scores = new double[length];
            double max = double.NegativeInfinity;
            for (int j = 0; j < length; j++)
            {
                if (keep is not null && !keep[b * length + j]) { scores[j] = double.NegativeInfinity; continue; }
                double dot = 0;
                for (int k = 0; k < d; k++) dot += x[(b * length + i) * width + r * d + k] * x[(b * length + j) * width + r * d + k];
                scores[j] = dot / Math.Sqrt(d);
                max = Math.Max(max, scores[j]);
            }
            double sum = scores.Sum(v => Math.Exp(v - max));
            return scores.Select(v => Math.Exp(v - max) / sum).ToArray();
        }
        double total = 0;
        int count = 0;
        for (int b = 0; b < batch; b++)
        for (int i = 0; i < length; i++)
        {
            if (keep is not null && !keep[b * length + i]) continue;
            double perQuery = 0;
            for (int r = 0; r < heads; r++)
            {
                double[] ps = Relation(s, ds, b, r, i), pt = Relation(t, dt, b, r, i);
                for (int j = 0; j < length; j++) if (pt[j] > 0) perQuery += pt[j] * Math.Log(pt[j] / ps[j]);
            }
            total += perQuery / heads;
            count++;
        }
        return count == 0 ? 0 : total / count;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_relation_loss_re_splits_different_widths_into_relation_heads(bool masked)
    {
        const int batch = 2, length = 5, ds = 8, dt = 12, heads = 4;
        double[] s = TestTensors.Normal(50, batch * length * ds, 1.5), t = TestTensors.Normal(51, batch * length * dt, 2);
        bool[]? keep = masked ? [true, true, true, false, false, true, true, true, true, true] : null;
        Tensor value = new MiniLMRelationLoss(heads).forward(TestTensors.Float32(s, batch, length, ds), TestTensors.Float32(t, batch, length, dt), keep is null ? null : tensor(keep, [batch, length]));
        TestTensors.Scalar(value).ShouldMatch(Reference(s, ds, t, dt, batch, length, heads, keep));

        TestTensors.Scalar(new MiniLMRelationLoss(heads).forward(TestTensors.Float64(s, batch, length, ds), TestTensors.Float64(s, batch, length, ds))).Should().BeApproximately(0, 1e-12);
        TestTensors.Scalar(new MiniLMRelationLoss(heads).forward(TestTensors.Float32(s, batch, length, ds), TestTensors.Float32(t, batch, length, dt), zeros(batch, length, dtype: ScalarType.Bool))).Should().Be(0);
    }

    [Fact]
    public void Relation_gradients_match_finite_differences()
    {
        double[] s = TestTensors.Normal(52, 2 * 3 * 4);
        Tensor t = TestTensors.Float64(TestTensors.Normal(53, 2 * 3 * 6), 2, 3, 6);
        Tensor keep = tensor(new[] { true, true, false, true, true, true }, [2, 3]);
        FiniteDifferences.GradientShouldMatch(x => new MiniLMRelationLoss(2).forward(x, t, keep), s, [2, 3, 4]);
    }

    [Fact]
    public void Reference_transformers_return_the_projections_of_each_layer_s_attention_input()
    {
        GptModel gpt = TinyModels.GptModel(3);
        Tensor ids = TinyModels.Ids(4, 2, 6, 37);
        using ModelOutput output = gpt.Run(new TokenBatch(ids), new OutputRequest(HiddenStates: true, QueryKeyValues: true));
        output.QueryKeyValues.Should().HaveCount(2);
        var w = gpt.state_dict();
        for (int layer = 0; layer < 2; layer++)
        {
            // Pre-norm: the attention reads attention_norm(h_layer); the fused projection splits into q, k, v.
            Tensor h = output.HiddenStates![layer];
            Tensor centred = h - h.mean([-1], keepdim: true);
            Tensor normed = centred * (centred.square().mean([-1], keepdim: true) + 1e-5).rsqrt() * w[$"blocks.{layer}.attention_norm.weight"] + w[$"blocks.{layer}.attention_norm.bias"];
            Tensor projected = nn.functional.linear(normed, w[$"blocks.{layer}.attention.qkv.weight"], w[$"blocks.{layer}.attention.qkv.bias"]);
            output.QueryKeyValues![layer].Queries.ShouldBeClose(projected.narrow(2, 0, 24));
            output.QueryKeyValues[layer].Keys.ShouldBeClose(projected.narrow(2, 24, 24));
            output.QueryKeyValues[layer].Values.ShouldBeClose(projected.narrow(2, 48, 24));
        }

        manual_seed(5);
        var llama = new LlamaModel(new LlamaConfig { VocabSize = 37, ContextLength = 16, Width = 24, Heads = 4, KeyValueHeads = 2, Layers = 2, FeedForwardWidth = 40 });
        llama.eval();
        using ModelOutput l = llama.Run(new TokenBatch(ids), new OutputRequest(HiddenStates: true, QueryKeyValues: true));
        var lw = llama.state_dict();
        Tensor hl = l.HiddenStates![1];
        Tensor rms = hl * (hl.square().mean([-1], keepdim: true) + 1e-6).rsqrt() * lw["blocks.1.attention_norm.weight"];
        l.QueryKeyValues![1].Queries.ShouldBeClose(nn.functional.linear(rms, lw["blocks.1.attention.query.weight"]), 1e-4);
        l.QueryKeyValues[1].Keys.shape.Should().Equal([2L, 6, 12], "two key/value heads of width 6: grouped-query keys are not expanded");
        ((IDistillationModel<TokenBatch>)llama).Provides.HasFlag(ModelOutputKinds.QueryKeyValues).Should().BeTrue();

        using ModelOutput plain = gpt.Run(new TokenBatch(ids), OutputRequest.LogitsOnly);
        plain.QueryKeyValues.Should().BeNull("only what is requested is returned");
    }

    [Fact]
    public void The_MiniLM_term_sums_the_chosen_relations_of_the_chosen_layers_with_different_head_counts()
    {
        GptModel teacher = TinyModels.GptModel(6, TinyModels.Gpt() with { Width = 24, Heads = 3, Layers = 3 });
        GptModel student = TinyModels.GptModel(7, TinyModels.Gpt() with { Width = 16, Heads = 2, Layers = 2 });
        Tensor ids = TinyModels.Ids(8, 2, 7, 37);
        Tensor mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }, [2, 7]);
        var request = new OutputRequest(QueryKeyValues: true);
        using ModelOutput t = teacher.Run(new TokenBatch(ids, mask), request);
        using ModelOutput s = student.Run(new TokenBatch(ids, mask), request);
        DistillationObjective objective = DistillationObjective.Create()
            .MiniLMRelations(1.0, studentLayer: ^1, teacherLayer: 1, relationHeads: 4)
            .MiniLMRelations(1.0, studentLayer: 0, teacherLayer: ^1, relationHeads: 8, relations: MiniLMRelations.ValueValue, name: "values")
            .Build();
        objective.StudentRequest.QueryKeyValues.Should().BeTrue();
        ObjectiveResult result = objective.Compute(new DistillationContext([t], s, null, null, 0));

        var four = new MiniLMRelationLoss(4);
        SelfAttentionStates sl = s.QueryKeyValues![1], tl = t.QueryKeyValues![1];
        float expected = (four.forward(sl.Queries, tl.Queries, mask) + four.forward(sl.Keys, tl.Keys, mask) + four.forward(sl.Values, tl.Values, mask)).item<float>();
        result.Terms[0].Value.item<float>().Should().BeApproximately(expected, 1e-5f);
        result.Terms[1].Value.item<float>().Should().BeApproximately(new MiniLMRelationLoss(8).forward(s.QueryKeyValues[0].Values, t.QueryKeyValues[2].Values, mask).item<float>(), 1e-5f);

        FluentActions.Invoking(() => DistillationObjective.Create().MiniLMRelations(1.0, 0, 5, 4).Build().Compute(new DistillationContext([t], s, null, null, 0)))
            .Should().Throw<InvalidOperationException>().WithMessage("*teacher's layer 5*3 layer(s)*");
        FluentActions.Invoking(() => DistillationObjective.Create().MiniLMRelations(1.0, 0, 0, 5).Build().Compute(new DistillationContext([t], s, null, null, 0)))
            .Should().Throw<ArgumentException>().WithMessage("*width 16 must divide into 5 relation heads*");
        FluentActions.Invoking(() => DistillationObjective.Create().MiniLMRelations(1.0, 0, 0, 0)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("relationHeads");
    }
}
