using System.Text;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Remote.OpenAi;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Remote.OpenAi;

/// <summary>Answers written by hand in each server's layout, read into rows; expected probabilities computed by hand (exp of the log-probabilities).</summary>
public sealed class OpenAiAnswerParsingTests
{
    private static readonly long[][] TwoTokens = [[3, 1]];

    private static LogprobRow[][] Vllm(string json, long[][]? sequences = null, int k = 2, Func<string, int?>? tokenIdOf = null) =>
        VllmCompletions.Parse(Encoding.UTF8.GetBytes(json), sequences ?? TwoTokens, k, vocabulary: 6, tokenIdOf);

    private static string VllmChoice(string position1, string generated, int index = 0) =>
        $$$"""{"index": {{{index}}}, "prompt_logprobs": [null, {{{position1}}}], "logprobs": {"top_logprobs": [{{{generated}}}]}}""";

    private const string GoodPosition1 = """{"1": {"logprob": -1.5, "rank": 3, "decoded_token": "b"}, "4": {"logprob": -0.5, "rank": 1, "decoded_token": "e"}, "0": {"logprob": -1.2, "rank": 2, "decoded_token": "a"}}""";
    private const string GoodGenerated = """{"token_id:2": -0.1, "token_id:5": -2.5, "token_id:3": -4.0}""";

    [Fact]
    public void A_vllm_answer_gives_position_t_from_prompt_logprobs_t_plus_1_and_the_last_from_the_generated_token()
    {
        LogprobRow[][] rows = Vllm($$"""{"choices": [{{VllmChoice(GoodPosition1, GoodGenerated)}}]}""");
        rows[0][0].Ids.Should().Equal(4, 0);
        rows[0][0].Logprobs.Should().Equal(-0.5, -1.2);
        rows[0][1].Ids.Should().Equal(new[] { 2, 5 }, "the sampled token 3 is the (k + 1)-th entry and is dropped");

        using TopKTargets targets = LogprobRow.ToTargets(rows, 2, vocabulary: 6, positions: 3, CPU);
        float[] p = targets.Probabilities.data<float>().ToArray();
        // exp(-0.5) = 0.6065307, exp(-1.2) = 0.3011942, tail 1 − 0.9077249; exp(-0.1) = 0.9048374, exp(-2.5) = 0.0820850, tail 0.0130776.
        p.Take(6).Should().BeEquivalentTo(new[] { 0.6065307f, 0.3011942f, 0.0922751f, 0.9048374f, 0.0820850f, 0.0130776f }, o => o.WithStrictOrdering().Using<float>(c => c.Subject.Should().BeApproximately(c.Expectation, 1e-6f)).WhenTypeIs<float>());
        p.Skip(6).Should().Equal([0f, 0f, 1f], "the padded third position holds its mass in the tail");
        targets.Indices.data<long>().ToArray().Should().Equal(4, 0, 2, 5, 0, 0);
        targets.Temperature.Should().Be(1.0);
    }

    [Theory]
    [InlineData("""{"choices": []}""", "*no choice with index 0*")]
    [InlineData("""{"object": "error", "message": "x"}""", "*no \"choices\" array*")]
    [InlineData("""{"choices": [{"index": 0, "logprobs": {"top_logprobs": [{"token_id:2": -0.1, "token_id:5": -2.5}]}}]}""", "*no prompt_logprobs*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null], "logprobs": {"top_logprobs": [{"token_id:2": -0.1, "token_id:5": -2.5}]}}]}""", "*1 prompt_logprobs entries; the sequence has 2 tokens*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": -1}, "4": {"logprob": -3}}], "logprobs": null}]}""", "*no logprobs.top_logprobs?0? for the generated token*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": -0.1}}], "logprobs": {"top_logprobs": [{"token_id:2": -0.1, "token_id:5": -2.5}]}}]}""", "*1 log-probabilities at sequence 0, position 0; TopK = 2 needs 2*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": -0.1}, "4": {"logprob": -9999.0}}], "logprobs": {"top_logprobs": [{"token_id:2": -0.1, "token_id:5": -2.5}]}}]}""", "*Token 4 at sequence 0, position 0 has log-probability -9999*removed by a sampling filter*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": -0.1}, "4": {"logprob": -0.2}}], "logprobs": {"top_logprobs": [{"token_id:2": -0.1, "token_id:5": -2.5}]}}]}""", "*add up to 1.72*more than 1*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": -0.1}, "6": {"logprob": -3}}], "logprobs": {"top_logprobs": [{"token_id:2": -0.1, "token_id:5": -2.5}]}}]}""", "*token id 6 at sequence 0, position 0; the vocabulary has 6 tokens*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": 0.5}, "4": {"logprob": -3}}], "logprobs": {"top_logprobs": [{"token_id:2": -0.1, "token_id:5": -2.5}]}}]}""", "*log-probability 0.5 for token 1*≤ 0*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": "high"}, "4": {"logprob": -3}}], "logprobs": {"top_logprobs": [{"token_id:2": -0.1, "token_id:5": -2.5}]}}]}""", "*no numeric log-probability at sequence 0, position 0*")]
    [InlineData("""{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": -1}, "4": {"logprob": -3}}], "logprobs": {"top_logprobs": [{" the": -0.1, "token_id:5": -2.5}]}}]}""", "*names token \" the\" at sequence 0, position 1 by its text; set OpenAiTeacherOptions.TokenIdOf*")]
    [InlineData("""not json""", "The vLLM answer is not JSON*")]
    public void A_vllm_answer_that_cannot_be_used_is_refused_with_the_reason(string json, string message)
    {
        ((Action)(() => Vllm(json))).Should().Throw<InvalidDataException>().WithMessage(message);
    }

    [Fact]
    public void Token_texts_are_mapped_through_the_vocabulary_and_an_unknown_one_is_refused()
    {
        string json = """{"choices": [{"index": 0, "prompt_logprobs": [null, {"1": {"logprob": -1}, "4": {"logprob": -3}}], "logprobs": {"top_logprobs": [{" the": -0.1, "ing": -2.5}]}}]}""";
        var vocabulary = new Dictionary<string, int> { [" the"] = 5, ["ing"] = 2 };
        Vllm(json, tokenIdOf: t => vocabulary.TryGetValue(t, out int id) ? id : null)[0][1].Ids.Should().Equal(5, 2);
        vocabulary.Remove("ing");
        ((Action)(() => Vllm(json, tokenIdOf: t => vocabulary.TryGetValue(t, out int id) ? id : null))).Should().Throw<InvalidDataException>()
            .WithMessage("*names token \"ing\" at sequence 0, position 1, which TokenIdOf does not map to an id*");
    }

    private static LogprobRow[][] LlamaCpp(string json, long[][]? sequences = null) =>
        LlamaCppCompletions.Parse(Encoding.UTF8.GetBytes(json), sequences ?? [[3, 1]], 2, vocabulary: 6, tokenIdOf: null);

    private static string LlamaResult(int index, string settings, string topLogprobs) =>
        $$$"""{"index": {{{index}}}, "generation_settings": {{{settings}}}, "completion_probabilities": [{"id": 1, "logprob": -0.3, "token": "b", "top_logprobs": {{{topLogprobs}}}}]}""";

    private const string Neutral = """{"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "dry_multiplier": 0.0, "xtc_probability": 0.0, "mirostat": 0, "dynatemp_range": 0.0, "logit_bias": []}""";
    private const string First = """[{"id": 1, "logprob": -0.3, "token": "b"}, {"id": 0, "logprob": -1.6, "token": "a"}]""";
    private const string Second = """[{"id": 5, "logprob": -0.05, "token": "f"}, {"id": 2, "logprob": -3.2, "token": "c"}]""";

    [Fact]
    public void A_llama_cpp_answer_gives_position_t_from_the_prefix_ending_at_t_in_index_order()
    {
        LogprobRow[][] rows = LlamaCpp($"[{LlamaResult(1, Neutral, Second)}, {LlamaResult(0, Neutral, First)}]");
        rows[0][0].Ids.Should().Equal(1, 0);
        rows[0][0].Logprobs.Should().Equal(-0.3, -1.6);
        rows[0][1].Ids.Should().Equal(5, 2);
        // The echo may nest the settings under "params", as /props shows them.
        LlamaCpp($$"""[{{LlamaResult(0, $$"""{"params": {{Neutral}}}""", First)}}, {{LlamaResult(1, Neutral, Second)}}]""")[0][1].Ids.Should().Equal(5, 2);
    }

    [Theory]
    [InlineData("temperature", "0.8", "*temperature = 0.8, not 1*")]
    [InlineData("top_k", "40", "*top_k = 40, not 0*")]
    [InlineData("top_p", "0.95", "*top_p = 0.95, not 1*")]
    [InlineData("min_p", "0.05", "*min_p = 0.05, not 0*")]
    [InlineData("repeat_penalty", "1.1", "*repeat_penalty = 1.1, not 1*")]
    [InlineData("mirostat", "2", "*mirostat = 2, not 0*")]
    [InlineData("logit_bias", "[[15, -1.0]]", "*applied a logit_bias*")]
    [InlineData("post_sampling_probs", "true", "*used post_sampling_probs*")]
    public void A_llama_cpp_answer_computed_with_a_sampling_setting_that_changes_the_distribution_is_refused_by_name(string setting, string value, string message)
    {
        string settings = Neutral.Replace("}", $", \"{setting}\": {value}}}");
        if (Neutral.Contains($"\"{setting}\"")) settings = System.Text.RegularExpressions.Regex.Replace(Neutral, $"\"{setting}\": [^,}}]+", $"\"{setting}\": {value}");
        ((Action)(() => LlamaCpp($"[{LlamaResult(0, settings, First)}, {LlamaResult(1, Neutral, Second)}]"))).Should().Throw<InvalidDataException>().WithMessage(message);
    }

    [Theory]
    [InlineData("[]", "*0 results; the request sent 2 prompts*")]
    [InlineData("""[{"index": 0, "completion_probabilities": []}, {"index": 1}]""", "*has no generation_settings*")]
    [InlineData("""[{"index": 0, "generation_settings": {}, "completion_probabilities": [{"top_probs": [{"id": 1, "prob": 0.7}]}]}, {"index": 1}]""", "*top_probs*after the sampler chain*refused*")]
    [InlineData("""[{"index": 0, "generation_settings": {}, "completion_probabilities": [{"id": 1, "logprob": -0.3}]}, {"index": 1}]""", "*no completion_probabilities?0?.top_logprobs*")]
    [InlineData("""[{"index": 0, "generation_settings": {}, "completion_probabilities": [{"top_logprobs": [{"logprob": -0.3, "token": "b"}, {"id": 0, "logprob": -1.6}]}]}, {"index": 1}]""", "*names token \"b\"*by its text only*")]
    [InlineData("""[{"index": 0, "generation_settings": {}, "completion_probabilities": [{"top_logprobs": [{"id": 1, "logprob": -0.3}, {"id": 1, "logprob": -1.6}]}]}, {"index": 1}]""", "*token id 1 twice at sequence 0, position 0*")]
    public void A_llama_cpp_answer_that_cannot_be_used_is_refused_with_the_reason(string json, string message)
    {
        ((Action)(() => LlamaCpp(json))).Should().Throw<InvalidDataException>().WithMessage(message);
    }

    [Fact]
    public void The_requests_set_every_sampling_setting_to_its_neutral_value_and_send_token_ids()
    {
        string vllm = Encoding.UTF8.GetString(VllmCompletions.Request("m", [[3, 1], [2]], 4));
        vllm.Should().Contain("\"prompt\":[[3,1],[2]]").And.Contain("\"temperature\":1").And.Contain("\"top_p\":1").And.Contain("\"top_k\":-1")
            .And.Contain("\"min_p\":0").And.Contain("\"repetition_penalty\":1").And.Contain("\"prompt_logprobs\":4").And.Contain("\"logprobs\":4")
            .And.Contain("\"return_tokens_as_token_ids\":true").And.Contain("\"max_tokens\":1");
        string llama = Encoding.UTF8.GetString(LlamaCppCompletions.Request([[3, 1], [2]], 4));
        llama.Should().Contain("\"prompt\":[[3],[3,1],[2]]").And.Contain("\"n_probs\":4").And.Contain("\"n_predict\":1").And.Contain("\"temperature\":1")
            .And.Contain("\"top_k\":0").And.Contain("\"post_sampling_probs\":false").And.Contain("\"repeat_penalty\":1");
    }
}
