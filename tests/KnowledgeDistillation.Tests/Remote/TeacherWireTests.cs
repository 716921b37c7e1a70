using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Remote;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Remote;

/// <summary>The wire format against values computed here in double precision.</summary>
public sealed class TeacherWireTests
{
    [Fact]
    public void A_top_k_response_holds_the_top_k_probabilities_at_temperature_and_the_tail_to_float16_precision()
    {
        var random = new Random(7);
        const int b = 2, s = 3, c = 10, k = 4;
        const double t = 1.5;
        double[] z = Enumerable.Range(0, b * s * c).Select(_ => random.NextDouble() * 6 - 3).ToArray();
        using Tensor logits = tensor(z.Select(v => (float)v).ToArray()).reshape(b, s, c);
        using TopKTargets targets = TopKTargets.FromLogits(logits, k, t);
        ModelOutput decoded = TeacherWire.DecodeResponse(TeacherWire.EncodeTopK(targets, c));

        float[] probabilities = decoded.TopK!.Probabilities.data<float>().ToArray();
        long[] indices = decoded.TopK.Indices.data<long>().ToArray();
        decoded.TopK.Temperature.Should().Be(t);
        decoded.TopK.Probabilities.shape.Should().Equal(b, s, k + 1);
        for (int row = 0; row < b * s; row++)
        {
            double[] scaled = z.Skip(row * c).Take(c).Select(v => (double)(float)v / t).ToArray();
            double max = scaled.Max(), sum = scaled.Sum(v => Math.Exp(v - max));
            double[] p = scaled.Select(v => Math.Exp(v - max) / sum).ToArray();
            int[] order = Enumerable.Range(0, c).OrderByDescending(i => p[i]).ToArray();
            for (int j = 0; j < k; j++)
            {
                indices[row * k + j].Should().Be(order[j]);
                probabilities[row * (k + 1) + j].Should().BeApproximately((float)p[order[j]], 1e-3f, "float16 keeps about three decimal digits");
            }
            probabilities[row * (k + 1) + k].Should().BeApproximately((float)order.Skip(k).Sum(i => p[i]), 1e-3f);
        }
    }

    [Fact]
    public void A_request_round_trips_ids_mask_and_token_types_and_a_values_response_its_values()
    {
        Tensor ids = tensor(new long[] { 1, 2, 3, 4, 5, 6 }).reshape(2, 3);
        TokenBatch decoded = TeacherWire.DecodeRequest(
            TeacherWire.EncodeRequest(new TokenBatch(ids, tensor(new[] { true, true, false, true, false, false }).reshape(2, 3), tensor(new long[] { 0, 1, 1, 0, 0, 1 }).reshape(2, 3))),
            new TeacherRequestLimits(10, 4, 4));
        decoded.InputIds.data<long>().ToArray().Should().Equal(1, 2, 3, 4, 5, 6);
        decoded.AttentionMask!.data<long>().ToArray().Should().Equal(1, 1, 0, 1, 0, 0);
        decoded.TokenTypeIds!.data<long>().ToArray().Should().Equal(0, 1, 1, 0, 0, 1);

        float[] values = [0.5f, -1.25f, 3f, 1e-3f, 70000f, -2f];
        ModelOutput f32 = TeacherWire.DecodeResponse(TeacherWire.EncodeValues(tensor(values).reshape(2, 3), TeacherCacheContent.Float32Values));
        f32.Logits.data<float>().ToArray().Should().Equal(values);
        ModelOutput f16 = TeacherWire.DecodeResponse(TeacherWire.EncodeValues(tensor(values).reshape(2, 3), TeacherCacheContent.Float16Values));
        f16.Logits.data<float>().ToArray().Should().Equal(values.Select(v => (float)(Half)v));
    }

    [Fact]
    public void A_class_count_above_65536_sends_four_byte_ids()
    {
        using Tensor logits = zeros(1, 70_000);
        logits[0, 69_999] = tensor(5f);
        logits[0, 40_000] = tensor(4f);
        using TopKTargets targets = TopKTargets.FromLogits(logits, 2, 1.0);
        ModelOutput decoded = TeacherWire.DecodeResponse(TeacherWire.EncodeTopK(targets, 70_000));
        decoded.TopK!.Indices.data<long>().ToArray().Should().Equal(69_999, 40_000);
    }
}
