using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Tests.Training;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.CrossTokenizer;

/// <summary>A byte-level teacher and a student with a two-letter vocabulary, trained through the trainer on cross-tokenized batches.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class CrossTokenizerTrainingTests
{
    // Student ids: 0..25 single letters, 26 + 26a + b for the pair "ab", 702 a space.
    private static CrossTokenizedText Tokenize(string text)
    {
        var ids = new List<int>();
        var lengths = new List<int>();
        for (int i = 0; i < text.Length;)
        {
            if (text[i] == ' ') { ids.Add(702); lengths.Add(1); i++; }
            else if (i + 1 < text.Length && text[i + 1] != ' ') { ids.Add(26 + 26 * (text[i] - 'a') + (text[i + 1] - 'a')); lengths.Add(2); i += 2; }
            else { ids.Add(text[i] - 'a'); lengths.Add(1); i++; }
        }
        return new CrossTokenizedText([.. ids], [.. lengths], text.Select(c => (int)c).ToArray(), text.Select(_ => 1).ToArray());
    }

    private static List<DistillationBatch<CrossTokenizerBatch>> Batches()
    {
        var random = new Random(5);
        string Word() => new(Enumerable.Range(0, random.Next(1, 6)).Select(_ => (char)('a' + random.Next(6))).ToArray());
        return Enumerable.Range(0, 3).Select(_ => CrossTokenizerBatch.Create(
            Enumerable.Range(0, 4).Select(_ => Tokenize(string.Join(' ', Enumerable.Range(0, 5).Select(_ => Word())))).ToList(), studentPadding: 702, teacherPadding: 32)).ToList();
    }

    [Fact]
    public void ULD_and_the_hybrid_train_a_student_with_another_tokenizer_and_their_terms_fall()
    {
        manual_seed(11);
        var teacher = new GptModel(new GptConfig { VocabSize = 256, ContextLength = 40, Width = 16, Heads = 2, Layers = 1, Dropout = 0 });
        List<DistillationBatch<CrossTokenizerBatch>> data = Batches();
        data[0].Inputs.Alignment.Spans.Should().NotBeEmpty();
        var studentBytes = TokenByteStrings.FromTiktokenRanks(new StringReader(string.Join("\n",
            Enumerable.Range(0, 702).Select(i => (i < 26 ? $"{(char)('a' + i)}" : $"{(char)('a' + (i - 26) / 26)}{(char)('a' + (i - 26) % 26)}"))
                .Append(" ").Select((t, i) => $"{Convert.ToBase64String(System.Text.Encoding.ASCII.GetBytes(t))} {i}"))), 703);
        VocabularyMatch match = VocabularyMatch.Between(studentBytes, TokenByteStrings.Bytes());
        match.Count.Should().Be(27, "26 letters and the space are single bytes on both sides");
        foreach (string method in new[] { "uld", "hybrid" })
        {
            manual_seed(12);
            var student = new GptModel(new GptConfig { VocabSize = 703, ContextLength = 40, Width = 16, Heads = 2, Layers = 1, Dropout = 0 });
            DistillationObjectiveBuilder builder = DistillationObjective.Create().HardTargets(0.1);
            DistillationObjective objective = (method == "uld" ? builder.UniversalLogitDistillation(1.0) : builder.CrossTokenizerHybrid(1.0, match, matchedWeight: 0.5, unmatchedWeight: 0.5)).Build();
            var trainer = new DistillationTrainer<CrossTokenizerBatch>(CrossTokenizerModels.Teacher(teacher), CrossTokenizerModels.Student(student), objective,
                TrainingFixtures.Options(40, o => o.LearningRate = 1e-2));
            var values = new List<double>();
            trainer.Train(data, callbacks: [new TermRecorder(method, values)]);
            values.Should().HaveCount(40).And.OnlyContain(v => double.IsFinite(v) && v >= 0);
            values.Skip(35).Average().Should().BeLessThan(values.Take(5).Average() * 0.8, $"forty steps on three batches reduce the {method} term");
        }
    }

    [Fact]
    public void A_cross_tokenizer_term_on_an_ordinary_batch_says_what_it_needs()
    {
        manual_seed(13);
        var model = new GptModel(new GptConfig { VocabSize = 20, ContextLength = 16, Width = 8, Heads = 2, Layers = 1, Dropout = 0 });
        var trainer = new DistillationTrainer<TokenBatch>(model, new GptModel(model.Config), DistillationObjective.Create().UniversalLogitDistillation(1.0).Build(), TrainingFixtures.Options(1));
        Tensor ids = randint(0, 20, [2, 6]);
        Action train = () => trainer.Train([new DistillationBatch<TokenBatch>(new TokenBatch(ids), ids)]);
        train.Should().Throw<Exception>().Which.ToString().Should().Contain("needs CrossTokenizerBatch inputs");
        ((Action)(() => CrossTokenizerBatch.Create([new CrossTokenizedText([1], [1], [1, 2], [1, 0])], 0, 0))).Should().Throw<ArgumentException>().WithMessage("*Text 0 has 1 student and 2 teacher tokens*");
    }

    [Fact]
    public void A_batch_knows_its_labelled_rows_and_the_terms_read_them_as_they_would_find_them()
    {
        // Student sides of 3 and 5 tokens (width 4): rows 0–1 and 4–7; teacher sides of 4 and 2 bytes (width 3): rows 0–2 and 3.
        var texts = new List<CrossTokenizedText> { new([1, 2, 3], [1, 1, 2], [1, 2, 3, 4], [1, 1, 1, 1]), new([1, 2, 3, 4, 5], [0, 1, 1, 0, 0], [5, 6], [1, 1]) };
        CrossTokenizerBatch batch = CrossTokenizerBatch.Create(texts, 0, 0).Inputs;
        batch.StudentLabelRows!.data<long>().ToArray().Should().Equal(0, 1, 4, 5, 6, 7);
        batch.TeacherLabelRows!.data<long>().ToArray().Should().Equal(0, 1, 2, 3);

        // The same training with the rows and without them (the term then finds them from the labels) ends at the same weights.
        var results = new List<float[]>();
        foreach (bool known in new[] { true, false })
        {
            manual_seed(14);
            var teacher = new GptModel(new GptConfig { VocabSize = 256, ContextLength = 40, Width = 16, Heads = 2, Layers = 1, Dropout = 0 });
            var student = new GptModel(new GptConfig { VocabSize = 703, ContextLength = 40, Width = 16, Heads = 2, Layers = 1, Dropout = 0 });
            List<DistillationBatch<CrossTokenizerBatch>> data = Batches().Select(b => known ? b
                : new DistillationBatch<CrossTokenizerBatch>(b.Inputs with { StudentLabelRows = null, TeacherLabelRows = null }, b.Labels)).ToList();
            new DistillationTrainer<CrossTokenizerBatch>(CrossTokenizerModels.Teacher(teacher), CrossTokenizerModels.Student(student),
                DistillationObjective.Create().HardTargets(0.5).UniversalLogitDistillation(1.0).Build(), TrainingFixtures.Options(3)).Train(data);
            results.Add(student.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray());
        }
        results[0].Should().Equal(results[1]);
    }

    private sealed class TermRecorder(string term, List<double> values) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => values.Add(report.Terms[term]);
    }
}
