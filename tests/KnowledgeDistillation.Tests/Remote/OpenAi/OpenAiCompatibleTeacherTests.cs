using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Remote.OpenAi;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Remote.ServerFixtures;

namespace KnowledgeDistillation.Tests.Remote.OpenAi;

/// <summary>Students trained against vLLM- and llama.cpp-style servers, against one trained in-process from the same teacher's top-k.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class OpenAiCompatibleTeacherTests
{
    private const int K = 5, Steps = 6;

    private static DistillationObjective Objective(double temperature = 1.0) =>
        DistillationObjective.Create().SoftTargets(0.8, temperature: temperature).HardTargets(0.2).Build();

    /// <summary>The same teacher in this process, giving its top-k at T = 1 as the servers' log-probabilities do.</summary>
    private sealed class InProcessTopK(GptModel teacher) : IDistillationModel<TokenBatch>, ITopKTeacher
    {
        public ModelOutputKinds Provides => ModelOutputKinds.TopKTargets;

        public double TopKTemperature => 1.0;

        public ModelOutput Run(TokenBatch input, OutputRequest request)
        {
            using var noGrad = no_grad();
            return new ModelOutput(TopKTargets.FromLogits(teacher.Run(input, new OutputRequest()).Logits, K, 1.0));
        }
    }

    private static float[] Train(IDistillationModel<TokenBatch> teacher, List<DistillationBatch<TokenBatch>> data)
    {
        GptModel student = Student(5);
        new DistillationTrainer<TokenBatch>(teacher, student, Objective(), Training.TrainingFixtures.Options(Steps)).Train(data);
        return Weights(student);
    }

    private static OpenAiTeacherOptions Options(FakeOpenAiServer server, OpenAiCompatibleServer kind) => new()
    {
        Endpoints = [server.Url],
        Server = kind,
        Model = FakeOpenAiServer.ModelName,
        ApiKey = FakeOpenAiServer.ApiKey,
        TopK = K,
        VocabularySize = Vocabulary,
        MaxRetries = 0,
    };

    [Theory]
    [InlineData(OpenAiCompatibleServer.Vllm)]
    [InlineData(OpenAiCompatibleServer.LlamaCpp)]
    public async Task A_student_trained_against_the_server_ends_at_the_weights_of_one_trained_in_process(OpenAiCompatibleServer kind)
    {
        GptModel teacher = Teacher(3);
        List<DistillationBatch<TokenBatch>> data = Batches(3);
        float[] inProcess = Train(new InProcessTopK(teacher), data);

        await using FakeOpenAiServer server = kind == OpenAiCompatibleServer.Vllm ? FakeOpenAiServer.Vllm(teacher) : FakeOpenAiServer.LlamaCpp(teacher);
        using var remote = OpenAiCompatibleTeacher.ForTokens(Options(server, kind));
        float[] served = Train(remote, data);

        served.Should().HaveCount(inProcess.Length);
        // The servers send log p in double; the tail 1 − Σp is then computed in double rather than float32.
        served.Zip(inProcess).Max(p => Math.Abs(p.First - p.Second)).Should().BeLessThanOrEqualTo(2e-6f); // measured 7e-7
        server.Requests.Should().Be(Steps, "one request per batch");
        int promptsPerBatch = kind == OpenAiCompatibleServer.Vllm ? 4 : 4 * Length;
        server.LastPrompts.Should().HaveCount(promptsPerBatch, kind == OpenAiCompatibleServer.Vllm ? "one prompt per sequence" : "one prompt per prefix");
    }

    [Theory]
    [InlineData(OpenAiCompatibleServer.Vllm)]
    [InlineData(OpenAiCompatibleServer.LlamaCpp)]
    public async Task Padding_is_not_sent_and_each_real_position_holds_the_teachers_own_top_k(OpenAiCompatibleServer kind)
    {
        GptModel teacher = Teacher(3);
        long[][] sequences = [[5, 9, 2, 33, 7], [11, 4], [8]];
        Tensor ids = zeros(3, 5, ScalarType.Int64), mask = zeros(3, 5, ScalarType.Int64);
        for (int b = 0; b < 3; b++)
        {
            ids[b, ..sequences[b].Length] = tensor(sequences[b]);
            mask[b, ..sequences[b].Length] = 1;
        }
        await using FakeOpenAiServer server = kind == OpenAiCompatibleServer.Vllm ? FakeOpenAiServer.Vllm(teacher) : FakeOpenAiServer.LlamaCpp(teacher);
        using var remote = OpenAiCompatibleTeacher.ForTokens(Options(server, kind));
        TopKTargets targets = remote.Run(new TokenBatch(ids, mask), new OutputRequest()).TopK!;

        targets.Probabilities.shape.Should().Equal(3, 5, K + 1);
        server.LastPrompts.Sum(p => p.Length).Should().Be(kind == OpenAiCompatibleServer.Vllm ? 8 : 15 + 3 + 1, "only real tokens are sent");
        for (int b = 0; b < 3; b++)
        {
            double[][] logp = FakeOpenAiServer.LogProbabilities(teacher, sequences[b]);
            for (int t = 0; t < 5; t++)
            {
                float[] row = targets.Probabilities[b, t].data<float>().ToArray();
                long[] classes = targets.Indices[b, t].data<long>().ToArray();
                if (t >= sequences[b].Length)
                {
                    row.Should().Equal([0f, 0f, 0f, 0f, 0f, 1f], "a padded position keeps its whole mass in the tail");
                    continue;
                }
                // Expected from a double-precision sort of the teacher's own distribution at this position.
                int[] expected = Enumerable.Range(0, Vocabulary).OrderByDescending(c => logp[t][c]).Take(K).ToArray();
                classes.Select(c => (int)c).Should().Equal(expected);
                double kept = 0;
                for (int j = 0; j < K; j++)
                {
                    row[j].Should().BeApproximately((float)Math.Exp(logp[t][expected[j]]), 1e-7f);
                    kept += Math.Exp(logp[t][expected[j]]);
                }
                row[K].Should().BeApproximately((float)(1 - kept), 1e-6f);
            }
        }
    }

    [Fact]
    public async Task A_vllm_answer_with_filtered_tokens_is_refused_and_nothing_is_trained()
    {
        GptModel teacher = Teacher(3);
        await using FakeOpenAiServer server = FakeOpenAiServer.Vllm(teacher, new FakeBehaviour { FilterAfterRank = 3 });
        using var remote = OpenAiCompatibleTeacher.ForTokens(Options(server, OpenAiCompatibleServer.Vllm));
        GptModel student = Student(5);
        float[] before = Weights(student);
        Action train = () => new DistillationTrainer<TokenBatch>(remote, student, Objective(), Training.TrainingFixtures.Options(1)).Train(Batches(1));
        train.Should().Throw<InvalidDataException>().WithMessage("*log-probability -9999*removed by a sampling filter*refused*");
        Weights(student).Should().Equal(before, "the step failed before the optimizer ran");
    }

    [Fact]
    public async Task A_llama_cpp_server_that_uses_another_temperature_or_post_sampling_probabilities_is_refused_by_name()
    {
        GptModel teacher = Teacher(3);
        TokenBatch batch = Batches(1)[0].Inputs;
        await using (FakeOpenAiServer hot = FakeOpenAiServer.LlamaCpp(teacher, new FakeBehaviour { ForcedTemperature = 0.8 }))
        {
            using var remote = OpenAiCompatibleTeacher.ForTokens(Options(hot, OpenAiCompatibleServer.LlamaCpp));
            ((Action)(() => remote.Run(batch, new OutputRequest()))).Should().Throw<InvalidDataException>()
                .WithMessage($"*temperature = 0.8, not 1*refused*(server {hot.Url})");
        }
        await using (FakeOpenAiServer post = FakeOpenAiServer.LlamaCpp(teacher, new FakeBehaviour { PostSamplingProbs = true }))
        {
            using var remote = OpenAiCompatibleTeacher.ForTokens(Options(post, OpenAiCompatibleServer.LlamaCpp));
            ((Action)(() => remote.Run(batch, new OutputRequest()))).Should().Throw<InvalidDataException>().WithMessage("*post_sampling_probs*refused*");
        }
    }

    [Fact]
    public async Task Token_texts_need_a_mapping_and_a_soft_target_term_at_another_temperature_is_refused()
    {
        GptModel teacher = Teacher(3);
        TokenBatch batch = Batches(1)[0].Inputs;
        await using FakeOpenAiServer server = FakeOpenAiServer.Vllm(teacher, new FakeBehaviour { TokensAsText = true });
        using (var unmapped = OpenAiCompatibleTeacher.ForTokens(Options(server, OpenAiCompatibleServer.Vllm)))
        {
            ((Action)(() => unmapped.Run(batch, new OutputRequest()))).Should().Throw<InvalidDataException>().WithMessage("*names token \"t*\" at sequence 0, position 11 by its text; set OpenAiTeacherOptions.TokenIdOf*");
        }
        OpenAiTeacherOptions mapped = Options(server, OpenAiCompatibleServer.Vllm);
        mapped.TokenIdOf = text => text.StartsWith('t') && int.TryParse(text[1..], out int id) ? id : null;
        using var teacherWithVocabulary = OpenAiCompatibleTeacher.ForTokens(mapped);
        TopKTargets mappedTargets = teacherWithVocabulary.Run(batch, new OutputRequest()).TopK!;
        TopKTargets expected = TopKTargets.FromLogits(teacher.Run(batch, new OutputRequest()).Logits, K, 1.0);
        mappedTargets.Indices.eq(expected.Indices).all().item<bool>().Should().BeTrue("texts mapped back to ids give the teacher's own top-k classes");

        Action hotter = () => new DistillationTrainer<TokenBatch>(teacherWithVocabulary, Student(5), Objective(temperature: 2.0), Training.TrainingFixtures.Options(1));
        hotter.Should().Throw<ArgumentException>().WithMessage("*runs at temperature 2 but teacher 0's cache was written at temperature 1*");
    }

    [Fact]
    public async Task A_wrong_key_or_model_fails_at_once_with_the_servers_message()
    {
        await using FakeOpenAiServer server = FakeOpenAiServer.Vllm(Teacher(3));
        TokenBatch batch = Batches(1)[0].Inputs;
        OpenAiTeacherOptions wrongKey = Options(server, OpenAiCompatibleServer.Vllm);
        wrongKey.ApiKey = "nope";
        wrongKey.MaxRetries = 3;
        using (var teacher = OpenAiCompatibleTeacher.ForTokens(wrongKey))
        {
            ((Action)(() => teacher.Run(batch, new OutputRequest()))).Should().Throw<InvalidOperationException>().WithMessage("The Vllm server at * answered 401 Unauthorized:*");
            teacher.Retries.Should().Be(0, "a 4xx is the request's fault, not retried");
        }
        OpenAiTeacherOptions wrongModel = Options(server, OpenAiCompatibleServer.Vllm);
        wrongModel.Model = "llama-70b";
        using var other = OpenAiCompatibleTeacher.ForTokens(wrongModel);
        ((Action)(() => other.Run(batch, new OutputRequest()))).Should().Throw<InvalidOperationException>().WithMessage("*404*The model `llama-70b` does not exist*");
    }

    [Theory]
    [InlineData(OpenAiCompatibleServer.Vllm, null, 5, 40, "Model must name the model*got none.*")]
    [InlineData(OpenAiCompatibleServer.LlamaCpp, null, 0, 40, "TopK must be 1 … 1000; got 0.*")]
    [InlineData(OpenAiCompatibleServer.LlamaCpp, null, 5, 0, "VocabularySize must be the teacher's vocabulary size, at least 1; got 0.*")]
    [InlineData(OpenAiCompatibleServer.Vllm, "m", 50, 40, "TopK must be at most VocabularySize (40); got 50.*")]
    [InlineData((OpenAiCompatibleServer)7, "m", 5, 40, "Server must be one of Vllm, LlamaCpp; got 7.*")]
    public void Options_that_cannot_work_are_refused_by_name(OpenAiCompatibleServer kind, string? model, int k, long vocabulary, string message)
    {
        var options = new OpenAiTeacherOptions { Endpoints = [new Uri("http://127.0.0.1:1/")], Server = kind, Model = model, TopK = k, VocabularySize = vocabulary };
        ((Action)(() => OpenAiCompatibleTeacher.ForTokens(options))).Should().Throw<ArgumentException>().WithMessage(message);
    }

    [Fact]
    public void A_mask_that_is_not_right_padding_or_an_empty_sequence_is_refused_before_anything_is_sent()
    {
        using var teacher = OpenAiCompatibleTeacher.ForTokens(new OpenAiTeacherOptions { Endpoints = [new Uri("http://127.0.0.1:1/")], Model = "m", TopK = 2, VocabularySize = 40 });
        Tensor ids = tensor(new long[] { 1, 2, 3, 4, 5, 6 }).reshape(2, 3);
        ((Action)(() => teacher.Run(new TokenBatch(ids, tensor(new long[] { 1, 1, 1, 0, 1, 1 }).reshape(2, 3)), new OutputRequest())))
            .Should().Throw<ArgumentException>().WithMessage("AttentionMask row 1 is not right padding: position 1 is 1 after a 0 at position 0*");
        ((Action)(() => teacher.Run(new TokenBatch(ids, tensor(new long[] { 1, 1, 1, 0, 0, 0 }).reshape(2, 3)), new OutputRequest())))
            .Should().Throw<ArgumentException>().WithMessage("Sequence 1 of the batch is empty*");
    }
}
