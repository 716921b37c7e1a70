// TinyBert: a 4-layer BERT-style teacher distilled into a 2-layer, half-width student, once on its predictions
// alone and once adding TinyBERT's intermediate losses (hidden-state MSE through learned projections, and MSE
// between attention scores), against the same student trained alone. See samples/TinyBert/README.md.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Samples.Shared;
using ScottPlot;
using Spectre.Console;
using TinyBert;
using static TorchSharp.torch;

var outputOption = new Option<string>("--output") { Description = "Folder for the plot and the cached teacher.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "tinybert") };
var quickOption = new Option<bool>("--quick") { Description = "A short run that checks everything works." };
var deviceOption = SampleDevice.Option();
var root = new RootCommand("Distil a BERT-style classifier into a 2-layer, half-width student with and without TinyBERT's intermediate losses.") { outputOption, quickOption, deviceOption };
root.SetAction(parse =>
{
    try
    {
        return Run(parse.GetValue(outputOption)!, parse.GetValue(quickOption), parse.GetValue(deviceOption)!);
    }
    catch (Exception e)
    {
        AnsiConsole.MarkupLine($"[red]TinyBert failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();

static int Run(string output, bool quick, string device)
{
    if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 132;
    int teacherSteps = quick ? 300 : 1500, studentSteps = quick ? 200 : 1000;
    var data = new MemberKinds(perClass: quick ? 2000 : 6000, length: 64);
    AnsiConsole.MarkupLine($"Task: member kind ({string.Join(", ", MemberKinds.Classes)}) from the first 64 bytes of its summary in {Markup.Escape(data.Source)}: {data.Train.Count:N0} training, {data.Validation.Count:N0} validation examples");
    List<DistillationBatch<TokenBatch>> validation = data.Batches(data.Validation, 50, shuffle: false).ToList();
    IEnumerable<DistillationBatch<TokenBatch>> Training(int _) => data.Batches(data.Train, 32, shuffle: true);

    var teacherConfig = new BertConfig { VocabSize = 256, ContextLength = 64, Width = 128, Heads = 4, Layers = 4, FeedForwardWidth = 512, NumLabels = 4, Dropout = 0.1 };
    BertConfig studentConfig = teacherConfig with { Layers = 2, Width = 64, Heads = 2, FeedForwardWidth = 256 };
    Directory.CreateDirectory(output);
    string cache = Path.Combine(output, $"teacher-{teacherSteps}steps.dat");
    manual_seed(1);
    var teacher = new BertModel(teacherConfig);
    var timer = Stopwatch.StartNew();
    if (File.Exists(cache)) teacher.load(cache);
    else
    {
        // The teacher learns from the labels alone: the same trainer, with no teacher and a label-only objective.
        Train("teacher", null, teacher, DistillationObjective.Create().HardTargets(1.0).Build(), teacherSteps, Training, device);
        teacher.save(cache);
    }
    double teacherSeconds = timer.Elapsed.TotalSeconds;

    LayerMap map = LayerSelection.UniformSpread.Map(teacherConfig, studentConfig, includeEmbeddings: true);
    var runs = new (string Name, DistillationObjective Objective)[]
    {
        ("student alone (labels only)", DistillationObjective.Create().HardTargets(1.0).Build()),
        ("distilled: logits only", DistillationObjective.Create().SoftTargets(0.7, temperature: 2.0).HardTargets(0.3).Build()),
        ("distilled: logits + hidden + attention", DistillationObjective.Create().SoftTargets(0.7, temperature: 2.0).HardTargets(0.3)
            .HiddenStateMse(1.0, map).AttentionMse(0.1, map, AttentionMapKind.Scores).Build()),
    };
    var rows = new List<(string Name, long Parameters, double Accuracy, double Retention, double Seconds)>();
    EvaluationReport? teacherReport = null;
    foreach (var (name, objective) in runs)
    {
        manual_seed(2); // every student starts from the same random initialisation
        var student = new BertModel(studentConfig);
        timer.Restart();
        DistillationTrainer<TokenBatch> trainer = Train(name, teacher, student, objective, studentSteps, Training, device);
        EvaluationReport report = trainer.Evaluate(validation);
        teacherReport ??= report;
        rows.Add((name, ModelSize.Of(student).Parameters, report.StudentMetric, report.Retention, timer.Elapsed.TotalSeconds));
    }

    var table = new Table().AddColumns("model", "layers x width", "parameters", "val accuracy", "retention", "train time (s)");
    table.AddRow("teacher", "4 x 128", ModelSize.Of(teacher).Parameters.ToString("N0", CultureInfo.InvariantCulture), teacherReport!.TeacherMetric.ToString("P1", CultureInfo.InvariantCulture), "", teacherSeconds.ToString("0", CultureInfo.InvariantCulture));
    foreach (var r in rows)
    {
        table.AddRow(r.Name, "2 x 64", r.Parameters.ToString("N0", CultureInfo.InvariantCulture), r.Accuracy.ToString("P1", CultureInfo.InvariantCulture),
            r.Retention.ToString("P1", CultureInfo.InvariantCulture), r.Seconds.ToString("0", CultureInfo.InvariantCulture));
    }
    AnsiConsole.Write(table);

    var plot = new Plot();
    double[] accuracies = [teacherReport.TeacherMetric, .. rows.Select(r => r.Accuracy)];
    plot.Add.Bars(accuracies);
    plot.Axes.Bottom.SetTicks([0, 1, 2, 3], ["teacher", "student alone", "logits only", "logits + hidden + attention"]);
    plot.Axes.SetLimitsY(Math.Max(0, accuracies.Min() - 0.1), Math.Min(1, accuracies.Max() + 0.05));
    plot.YLabel("validation accuracy");
    plot.Title("Member kind from the first 64 bytes of an API summary");
    string path = Path.Combine(output, "accuracy.png");
    plot.SavePng(path, 800, 450);
    AnsiConsole.MarkupLine($"Plot: {Markup.Escape(path)}");

    bool distillationWins = rows.Skip(1).All(r => r.Accuracy > rows[0].Accuracy);
    if (!distillationWins) AnsiConsole.MarkupLine("[red]A distilled student did not beat the student trained alone.[/]");
    return distillationWins ? 0 : 2;
}

static DistillationTrainer<TokenBatch> Train(string name, BertModel? teacher, BertModel student, DistillationObjective objective, int steps,
    Func<int, IEnumerable<DistillationBatch<TokenBatch>>> data, string device)
{
    var options = new DistillationTrainerOptions
    {
        MaxSteps = steps, LearningRate = 1e-3, WarmupSteps = steps / 10, Decay = LearningRateDecay.Cosine, Device = device, Seed = 3, LoggingInterval = 25,
    };
    var trainer = new DistillationTrainer<TokenBatch>(teacher is null ? [] : [teacher], student, objective, options);
    TrainingProgressBar.Show(name, steps, progress => trainer.Train(data, progress: progress));
    return trainer;
}
