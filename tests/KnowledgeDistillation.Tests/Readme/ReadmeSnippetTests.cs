using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Readme;

[Collection(GlobalRngCollection.Name)] // the cache and snippet tests compare runs against references from seeded initialisations
public class ReadmeSnippetTests
{
    private static string[] SnippetFromSource(string file = "OwnLoopSnippet.cs")
    {
        string[] lines = File.ReadAllLines(Path.Combine(BuildFacts.RepositoryRoot, "tests", "KnowledgeDistillation.Tests", "Readme", file));
        int begin = Array.FindIndex(lines, l => l.Trim() == "// snippet-begin"), end = Array.FindIndex(lines, l => l.Trim() == "// snippet-end");
        string[] body = lines[(begin + 1)..end];
        int indent = body.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
        return body.Select(l => l.Length >= indent ? l[indent..] : l.Trim()).ToArray();
    }

    private static string[] SnippetFromReadme(string document = "README.md", string marker = "<!-- snippet: own-loop (tests/KnowledgeDistillation.Tests/Readme/OwnLoopSnippet.cs) -->")
    {
        string[] lines = File.ReadAllLines(Path.Combine(BuildFacts.RepositoryRoot, document));
        int markerLine = Array.FindIndex(lines, l => l.Trim() == marker);
        markerLine.Should().BeGreaterThanOrEqualTo(0, "{0} marks the snippet it shares with the tests", document);
        int open = Array.FindIndex(lines, markerLine, l => l.StartsWith("```", StringComparison.Ordinal));
        int close = Array.FindIndex(lines, open + 1, l => l.StartsWith("```", StringComparison.Ordinal));
        return lines[(open + 1)..close].SkipWhile(l => l.StartsWith("using ", StringComparison.Ordinal) || l.Length == 0).ToArray();
    }

    [Fact]
    public void The_README_shows_exactly_the_code_that_is_compiled_here()
    {
        SnippetFromReadme().Should().Equal(SnippetFromSource());
    }

    [Fact]
    public void The_trainer_guide_shows_exactly_the_example_that_is_compiled_here()
    {
        SnippetFromReadme("docs/trainer.md", "<!-- snippet: trainer-example (tests/KnowledgeDistillation.Tests/Readme/TrainerExample.cs) -->")
            .Should().Equal(SnippetFromSource("TrainerExample.cs"));
    }

    [Fact]
    public void The_tokenizer_guide_shows_exactly_the_cross_tokenizer_example_that_is_compiled_here()
    {
        SnippetFromReadme("docs/tokenizers.md", "<!-- snippet: cross-tokenizer (tests/KnowledgeDistillation.Tests/Readme/CrossTokenizerExample.cs) -->")
            .Should().Equal(SnippetFromSource("CrossTokenizerExample.cs"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_cross_tokenizer_example_distils_a_Mistral_tokenized_student_from_a_GPT2_tokenized_teacher(bool hybrid)
    {
        // Real tokenizers, small models: the teacher reads GPT-2's tokens, the student Mistral's.
        HuggingFaceTokenizer gpt2 = Pretrained.TokenizerJson.RealTokenizerJsonTests.Tokenizer("gpt2"), mistral = Pretrained.TokenizerJson.RealTokenizerJsonTests.Tokenizer("llama2");
        torch.manual_seed(21);
        var teacher = new KnowledgeDistillation.Transformers.GptModel(new KnowledgeDistillation.Transformers.GptConfig { VocabSize = gpt2.VocabularySize, ContextLength = 64, Width = 8, Heads = 2, Layers = 1, Dropout = 0 });
        var student = new KnowledgeDistillation.Transformers.GptModel(new KnowledgeDistillation.Transformers.GptConfig { VocabSize = mistral.VocabularySize, ContextLength = 64, Width = 8, Heads = 2, Layers = 1, Dropout = 0 });
        string[] texts = ["The teacher reads GPT-2 tokens.", "The student reads Mistral's, naïve café included.", "Both see the same bytes: 東京 🙂"];
        TrainingResult result = CrossTokenizerExample.Run(mistral, gpt2, texts, teacher, student, Training.TrainingFixtures.Options(2), hybrid);
        result.Steps.Should().Be(2);
        result.LastStep!.Terms.Should().ContainKey(hybrid ? "hybrid" : "uld").WhoseValue.Should().BeGreaterThan(0).And.Match(v => double.IsFinite(v));
    }

    [Fact]
    public void The_trainer_example_runs_and_evaluates()
    {
        var teacher = Training.TrainingFixtures.Teacher();
        using var folder = new TemporaryFolder();

        TrainingResult result = TrainerExample.Run(teacher, Training.TrainingFixtures.Student(), Training.TrainingFixtures.Data(teacher, 120, 32, 41),
            Training.TrainingFixtures.Data(teacher, 4, 64, 42), folder.Path, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);

        result.Steps.Should().BeGreaterThan(0);
        result.LastEvaluation!.StudentMetric.Should().BeGreaterThan(0.5, "a student of the teacher's own labels learns them");
        Directory.GetDirectories(folder.Path, "checkpoint-*").Should().NotBeEmpty();
    }

    [Fact]
    public void The_trainer_guide_shows_exactly_the_teacher_cache_example_that_is_compiled_here()
    {
        SnippetFromReadme("docs/trainer.md", "<!-- snippet: teacher-cache (tests/KnowledgeDistillation.Tests/Readme/TeacherCacheExample.cs) -->")
            .Should().Equal(SnippetFromSource("TeacherCacheExample.cs"));
    }

    [Fact]
    public void The_teacher_cache_example_trains_a_student_towards_its_teacher_without_running_the_teacher()
    {
        using var folder = new TemporaryFolder();
        var config = new KnowledgeDistillation.Transformers.GptConfig { VocabSize = 40, ContextLength = 8, Width = 16, Heads = 2, Layers = 2, FeedForwardWidth = 32, Dropout = 0 };
        manual_seed(5);
        var teacher = new KnowledgeDistillation.Transformers.GptModel(config);
        using (no_grad())
        {
            // A random transformer is nearly uniform over its vocabulary; a sharper final norm gives it something to teach.
            foreach (var (name, p) in teacher.named_parameters()) if (name.StartsWith("final_norm.", StringComparison.Ordinal)) p.mul_(10);
        }
        var student = new KnowledgeDistillation.Transformers.GptModel(config with { Layers = 1 });
        var training = Enumerable.Range(0, 20).Select(i =>
        {
            Tensor tokens = randint(0, 40, [4, 8]).DetachFromDisposeScope();
            Tensor labels;
            using (no_grad()) labels = teacher.call(tokens).argmax(-1).DetachFromDisposeScope(); // the teacher's own next-token choices
            var inputs = new KnowledgeDistillation.Models.TokenBatch(tokens, ExampleIndices: arange(i * 4L, i * 4L + 4).DetachFromDisposeScope());
            return new DistillationBatch<KnowledgeDistillation.Models.TokenBatch>(inputs, labels);
        }).ToList();
        double Gap(KnowledgeDistillation.Transformers.GptModel model)
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            model.eval();
            double gap = training.Average(b => (double)new SoftTargetKLLoss(2.0).forward(model.call(b.Inputs.InputIds), teacher.call(b.Inputs.InputIds)).item<float>());
            model.train();
            return gap;
        }
        double before = Gap(student);
        // The control: the same student, objective and options with the live teacher. Top-32 of 40 tokens at T = 2 keeps
        // nearly all of the teacher's probability, so a cache read back right trains nearly the same student; a cache
        // read at the wrong temperature, or with its probabilities misplaced, would not.
        var liveStudent = new KnowledgeDistillation.Transformers.GptModel(config with { Layers = 1 });
        liveStudent.load_state_dict(student.state_dict());
        new DistillationTrainer<KnowledgeDistillation.Models.TokenBatch>(teacher, liveStudent,
            KnowledgeDistillation.Objectives.DistillationObjective.Create().SoftTargets(0.5, temperature: 2.0).HardTargets(0.5).Build(), new DistillationTrainerOptions { Epochs = 4, LearningRate = 1e-3 })
            .Train(training);

        TrainingResult result = TeacherCacheExample.Run(teacher, student, training, folder.PathOf("teacher.kdtc"));

        result.Steps.Should().Be(4 * training.Count);
        double after = Gap(student), live = Gap(liveStudent);
        after.Should().BeLessThan(before * 0.9, "four epochs on the cached top-32 targets move the student towards the teacher (from {0})", before);
        Math.Abs(after - live).Should().BeLessThan(0.02 * (before - live), "the cached run ends where the live run ends ({0} from {1}; live {2})", after, before, live);
    }

    [Fact]
    public void The_snippet_trains_a_student_towards_its_teacher()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var teacher = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4));
        var student = nn.Sequential(nn.Linear(8, 4));
        Tensor inputs = randn(256, 8);
        Tensor labels;
        using (no_grad()) labels = teacher.call(inputs).argmax(-1);
        var batches = Enumerable.Range(0, 8).Select(i => (inputs[TensorIndex.Slice(i * 32, (i + 1) * 32)], labels[TensorIndex.Slice(i * 32, (i + 1) * 32)])).ToList();
        double Gap()
        {
            using var noGrad = no_grad();
            return new SoftTargetKLLoss(2.0).call(student.call(inputs), teacher.call(inputs)).item<float>();
        }
        double before = Gap();
        // The reference: the same loop with the loss written out here from its definition,
        // 0.9 · T² · Σ p_t (log p_t − log_softmax(s / T)) / rows + 0.1 · CE, at T = 2, from the same initial weights.
        var reference = nn.Sequential(nn.Linear(8, 4));
        reference.load_state_dict(student.state_dict());
        for (int epoch = 0; epoch < 20; epoch++) ReferenceLoop(teacher, reference, batches);

        for (int epoch = 0; epoch < 20; epoch++) OwnLoopSnippet.Train(teacher, student, batches);

        Gap().Should().BeLessThan(before / 2, "twenty epochs of the snippet's loop move the student towards the teacher (from {0})", before);
        foreach (var (name, p) in student.named_parameters())
        {
            using var noGrad = no_grad();
            (p - reference.get_parameter(name)!).abs().max().item<float>().Should().BeLessThan(1e-5f, "{0} is what the written-out loss trains", name);
        }
    }

    private static void ReferenceLoop(nn.Module<Tensor, Tensor> teacher, nn.Module<Tensor, Tensor> student, IEnumerable<(Tensor Inputs, Tensor Labels)> batches)
    {
        const double T = 2.0;
        var optimizer = optim.AdamW(student.parameters(), lr: 1e-3);
        foreach (var (inputs, labels) in batches)
        {
            using var scope = NewDisposeScope();
            Tensor teacherLogits;
            using (no_grad()) teacherLogits = teacher.call(inputs);
            Tensor studentLogits = student.call(inputs);
            Tensor logPTeacher = (teacherLogits / T).log_softmax(-1), logPStudent = (studentLogits / T).log_softmax(-1);
            Tensor kl = (logPTeacher.exp() * (logPTeacher - logPStudent)).sum() / inputs.shape[0];
            Tensor ce = -studentLogits.log_softmax(-1).gather(1, labels.unsqueeze(1)).mean();
            Tensor loss = 0.9 * T * T * kl + 0.1 * ce;
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        }
    }

    [Fact]
    public void The_pretrained_guide_shows_exactly_the_example_that_is_compiled_here()
    {
        SnippetFromReadme("docs/pretrained.md", "<!-- snippet: pretrained-example (tests/KnowledgeDistillation.Tests/Readme/PretrainedExample.cs) -->")
            .Should().Equal(SnippetFromSource("PretrainedExample.cs"));
    }

    [Fact]
    public void The_pretrained_example_runs_from_folder_to_folder()
    {
        using var scope = NewDisposeScope();
        using var teacherFolder = new TemporaryFolder();
        using var studentFolder = new TemporaryFolder();
        string tokenizers = Path.Combine(BuildFacts.RepositoryRoot, "tests", "KnowledgeDistillation.Tests", "Fixtures", "Tokenizers", "sentencepiece");
        manual_seed(4);
        var teacher = new KnowledgeDistillation.Transformers.LlamaModel(new KnowledgeDistillation.Transformers.LlamaConfig
        {
            VocabSize = 400, Width = 32, Heads = 4, KeyValueHeads = 2, Layers = 2, FeedForwardWidth = 64,
        });
        PretrainedFolder.Save(teacher, teacherFolder.Path);
        foreach (string file in new[] { "tokenizer.model", "tokenizer_config.json" }) File.Copy(Path.Combine(tokenizers, file), teacherFolder.PathOf(file));
        string[] texts = Enumerable.Range(0, 16).Select(i => $"The student {i} learns from the teacher's distribution at temperature {i % 3 + 1}.").ToArray();

        var reloaded = PretrainedExample.Run(teacherFolder.Path, studentFolder.Path, texts, steps: 4);

        reloaded.Model.Config.Layers.Should().Be(1);
        reloaded.Report.Loaded.Should().NotBeEmpty();
        File.Exists(studentFolder.PathOf("tokenizer.model")).Should().BeTrue("the teacher's tokenizer is copied beside the student");
        using (no_grad())
        {
            reloaded.Model.state_dict()["blocks.0.feed_forward.gate.weight"].eq(teacher.state_dict()["blocks.1.feed_forward.gate.weight"]).all().item<bool>()
                .Should().BeFalse("the student trained away from the teacher layer it started from");
        }
    }
}
