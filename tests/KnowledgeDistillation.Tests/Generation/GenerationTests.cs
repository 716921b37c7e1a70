using KnowledgeDistillation.Generation;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Generation;

/// <summary>The key/value cache agrees with full forward passes; generation is reproducible, stops at EOS and treats left padding exactly.</summary>
public class GenerationTests
{
    public static TheoryData<string> Decoders() => ["gpt", "llama", "mistral-window"];

    private static ICausalLanguageModel Decoder(string kind, int seed = 1)
    {
        manual_seed(seed);
        ICausalLanguageModel model = kind switch
        {
            "gpt" => new GptModel(new GptConfig { VocabSize = 31, ContextLength = 40, Width = 32, Heads = 4, Layers = 2, Dropout = 0 }),
            "llama" => new LlamaModel(new LlamaConfig { VocabSize = 31, ContextLength = 40, Width = 32, Heads = 4, KeyValueHeads = 2, Layers = 2, FeedForwardWidth = 48 }),
            _ => new LlamaModel(new LlamaConfig { VocabSize = 31, ContextLength = 40, Width = 32, Heads = 4, KeyValueHeads = 1, Layers = 2, FeedForwardWidth = 48, SlidingWindow = 5, Family = DecoderFamily.Mistral }),
        };
        model.Module.eval();
        return model;
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void Logits_with_the_cache_equal_those_of_full_forward_passes_with_and_without_left_padding(string kind)
    {
        using var scope = NewDisposeScope();
        ICausalLanguageModel model = Decoder(kind);
        Tensor ids = TinyModels.Ids(3, 2, 14, 31);
        Tensor mask = tensor(new bool[,] { { true, true, true, true, true, true, true, true, true, true, true, true, true, true }, { false, false, false, true, true, true, true, true, true, true, true, true, true, true } });
        Tensor positions = mask.to(ScalarType.Int64).cumsum(1).sub(1).clamp_min(0);
        using var noGrad = no_grad();
        Tensor full = model.Run(new TokenBatch(ids, mask) { PositionIds = positions }, OutputRequest.LogitsOnly, null).Logits;

        using var cache = new KeyValueCache();
        var pieces = new List<Tensor> { model.Run(new TokenBatch(ids[.., ..6], mask[.., ..6]) { PositionIds = positions[.., ..6] }, OutputRequest.LogitsOnly, cache).Logits };
        for (int t = 6; t < 14; t++)
        {
            pieces.Add(model.Run(new TokenBatch(ids[.., t..(t + 1)], mask[.., ..(t + 1)]) { PositionIds = positions[.., t..(t + 1)] }, OutputRequest.LogitsOnly, cache).Logits);
        }
        Tensor incremental = cat(pieces, 1);

        cache.Length.Should().Be(14);
        // Padded query rows see no real key and hold arbitrary values in both; compare the real positions.
        Tensor real = mask.unsqueeze(-1).expand_as(full);
        (full - incremental).abs().masked_fill(real.logical_not(), 0).max().item<float>().Should().BeLessThan(1e-5f);
        // Without padding, the row with the full prompt equals a plain forward pass of its own.
        Tensor alone = model.Run(new TokenBatch(ids[..1]), OutputRequest.LogitsOnly, null).Logits;
        (alone - incremental[..1]).abs().max().item<float>().Should().BeLessThan(1e-5f);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void A_left_padded_batch_generates_what_each_prompt_generates_alone(string kind)
    {
        using var scope = NewDisposeScope();
        ICausalLanguageModel model = Decoder(kind);
        Tensor first = TinyModels.Ids(5, 1, 7, 31), second = TinyModels.Ids(6, 1, 4, 31);
        var options = new GenerationOptions { MaxNewTokens = 9 };

        using GenerationResult batch = TextGeneration.Generate(model, cat([first, cat([zeros(1, 3, dtype: ScalarType.Int64), second], 1)], 0),
            tensor(new bool[,] { { true, true, true, true, true, true, true }, { false, false, false, true, true, true, true } }), options);
        using GenerationResult a = TextGeneration.Generate(model, first, null, options);
        using GenerationResult b = TextGeneration.Generate(model, second, null, options);

        batch.Completions[0].data<long>().ToArray().Should().Equal(a.Completions[0].data<long>().ToArray());
        batch.Completions[1].data<long>().ToArray().Should().Equal(b.Completions[0].data<long>().ToArray());
        batch.Sequences.shape.Should().Equal(2, 16);
    }

    [Fact]
    public void The_same_seed_gives_the_same_samples_whatever_the_global_RNG_did_and_another_seed_other_samples()
    {
        using var scope = NewDisposeScope();
        ICausalLanguageModel model = Decoder("llama");
        Tensor prompts = TinyModels.Ids(7, 4, 5, 31);
        var options = new GenerationOptions { MaxNewTokens = 20, Sample = true, Temperature = 1.5, Seed = 42 };

        long[] once = Run(options);
        manual_seed(999);
        _ = randn(100);
        long[] again = Run(options);
        long[] other = Run(options with { Seed = 43 });

        again.Should().Equal(once);
        other.Should().NotEqual(once);

        long[] Run(GenerationOptions o)
        {
            using GenerationResult r = TextGeneration.Generate(model, prompts, null, o);
            return r.Completions.data<long>().ToArray();
        }
    }

    [Fact]
    public void Top_k_of_one_and_a_tiny_top_p_sample_what_greedy_picks()
    {
        using var scope = NewDisposeScope();
        ICausalLanguageModel model = Decoder("gpt");
        Tensor prompts = TinyModels.Ids(8, 3, 4, 31);

        long[] Run(GenerationOptions o)
        {
            using GenerationResult r = TextGeneration.Generate(model, prompts, null, o);
            return r.Completions.data<long>().ToArray();
        }

        long[] greedy = Run(new GenerationOptions { MaxNewTokens = 12 });
        Run(new GenerationOptions { MaxNewTokens = 12, Sample = true, TopK = 1, Temperature = 3, Seed = 1 }).Should().Equal(greedy);
        Run(new GenerationOptions { MaxNewTokens = 12, Sample = true, TopP = 1e-6, Temperature = 3, Seed = 2 }).Should().Equal(greedy);
    }

    [Fact]
    public void Sampling_follows_the_tempered_and_filtered_distribution()
    {
        // One row of fixed logits, 20,000 draws: the frequencies match softmax(logits / T) restricted to the kept tokens.
        using var scope = NewDisposeScope();
        Tensor logits = tensor(new float[] { 2.0f, 1.0f, 0.5f, 0.0f, -1.0f }).unsqueeze(0).expand(20_000, 5).contiguous();
        var generator = new Generator(7, CPU);
        double[] Frequencies(GenerationOptions o)
        {
            long[] drawn = TextGeneration.Choose(logits, o, generator).data<long>().ToArray();
            return Enumerable.Range(0, 5).Select(i => drawn.Count(d => d == i) / 20_000.0).ToArray();
        }
        static double[] Softmax(double[] z, double t)
        {
            double[] e = z.Select(v => double.IsNegativeInfinity(v) ? 0 : Math.Exp(v / t)).ToArray();
            return e.Select(v => v / e.Sum()).ToArray();
        }
        double[] z = [2.0, 1.0, 0.5, 0.0, -1.0];

        Frequencies(new GenerationOptions { Sample = true, Temperature = 2 }).Should().Equal(Softmax(z, 2), (a, b) => Math.Abs(a - b) < 0.012);
        Frequencies(new GenerationOptions { Sample = true, TopK = 2 }).Should().Equal(Softmax([2.0, 1.0, double.NegativeInfinity, double.NegativeInfinity, double.NegativeInfinity], 1), (a, b) => Math.Abs(a - b) < 0.012);
        // softmax(z) = 0.539, 0.198, 0.120, 0.073, 0.027: p = 0.7 keeps the first two (0.539 < 0.7 ≤ 0.737).
        Frequencies(new GenerationOptions { Sample = true, TopP = 0.7 }).Should().Equal(Softmax([2.0, 1.0, double.NegativeInfinity, double.NegativeInfinity, double.NegativeInfinity], 1), (a, b) => Math.Abs(a - b) < 0.012);
    }

    [Fact]
    public void A_row_stops_at_its_end_token_and_later_positions_are_padding_outside_every_mask()
    {
        using var scope = NewDisposeScope();
        ICausalLanguageModel model = Decoder("llama");
        Tensor prompts = TinyModels.Ids(9, 2, 5, 31);
        using GenerationResult free = TextGeneration.Generate(model, prompts, null, new GenerationOptions { MaxNewTokens = 10 });
        long[][] rows = [free.Completions[0].data<long>().ToArray(), free.Completions[1].data<long>().ToArray()];
        int eos = (int)rows[0][3]; // row 0 ends at its fourth new token

        using GenerationResult stopped = TextGeneration.Generate(model, prompts, null, new GenerationOptions { MaxNewTokens = 10, EosTokenId = eos, PadTokenId = 30 });

        long length = stopped.Completions.shape[1];
        int[] ends = rows.Select(r => Array.IndexOf(r, (long)eos)).ToArray();
        length.Should().Be(ends.Any(e => e < 0) ? 10 : ends.Max() + 1, "generation stops when every row has ended, or at MaxNewTokens");
        for (int row = 0; row < 2; row++)
        {
            long[] generated = stopped.Completions[row].data<long>().ToArray();
            int kept = ends[row] < 0 ? (int)length : ends[row] + 1; // up to and including the end token, or all of a row that never ends
            generated[..kept].Should().Equal(rows[row][..kept], "row {0} generates what it generates without an end token, up to that token", row);
            generated[kept..].Where(t => t != 30).Should().BeEmpty("row {0} is padding after its end token", row);
            bool[] completion = stopped.CompletionMask[row].data<bool>().ToArray();
            completion[..5].Should().OnlyContain(c => !c, "prompt columns are not completion");
            completion[5..].Should().Equal(Enumerable.Range(0, (int)length).Select(i => i < kept), "row {0}'s padding is outside the completion mask", row);
            stopped.AttentionMask[row].data<bool>().ToArray()[5..].Should().Equal(completion[5..], "row {0}'s padding is outside the attention mask", row);
        }
    }

    [Fact]
    public void Bad_requests_name_the_argument()
    {
        ICausalLanguageModel model = Decoder("gpt");
        Tensor prompts = zeros(2, 5, dtype: ScalarType.Int64);
        ((Action)(() => TextGeneration.Generate(model, prompts, null, new GenerationOptions { MaxNewTokens = 36 }))).Should().Throw<ArgumentException>()
            .WithMessage("The prompts have 5 tokens and MaxNewTokens is 36, 41 in all; the model's context holds 40.*");
        ((Action)(() => TextGeneration.Generate(model, prompts, tensor(new bool[,] { { true, false, true, true, true }, { true, true, true, true, true } }), new GenerationOptions())))
            .Should().Throw<ArgumentException>().WithMessage("promptMask must pad on the left*");
        ((Action)(() => TextGeneration.Generate(model, prompts, null, new GenerationOptions { TopP = 0 }))).Should().Throw<ArgumentException>().WithMessage("TopP must lie in (0, 1]*");
        ((Action)(() => TextGeneration.Generate(model, zeros(2, 5), null, new GenerationOptions()))).Should().Throw<ArgumentException>().WithMessage("promptIds must be integer token ids*");
        int vocabulary = model.VocabSize;
        ((Action)(() => TextGeneration.Generate(model, prompts, null, new GenerationOptions { EosTokenId = vocabulary }))).Should().Throw<ArgumentException>()
            .WithMessage($"EosTokenId must be a token of the model's vocabulary, in [0, {vocabulary}); got {vocabulary}.*").Which.ParamName.Should().Be("options");
        ((Action)(() => TextGeneration.Generate(model, prompts, null, new GenerationOptions { PadTokenId = vocabulary + 5 }))).Should().Throw<ArgumentException>()
            .WithMessage($"PadTokenId must be a token of the model's vocabulary, in [0, {vocabulary}); got {vocabulary + 5}.*");
    }
}
