// FashionMnist: Hinton, Vinyals and Dean's 2015 experiment, transposed to Fashion-MNIST. A small CNN teacher,
// a 2x800 and a tiny 2x30 MLP student, each trained alone and distilled at several temperatures; test errors
// out of 10,000. The teacher's logits on the training set are computed once and served from memory (a "cached
// teacher"), so distilling costs no more than training alone. See samples/FashionMnist/README.md.
using System.CommandLine;
using System.Globalization;
using FashionMnist;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using ScottPlot;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

var dataOption = new Option<string>("--data") { Description = "Folder with the four Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnistData.DebianFolder };
var outputOption = new Option<string>("--output") { Description = "Folder for the plot and the cached teacher.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "fashion-mnist") };
var quickOption = new Option<bool>("--quick") { Description = "A short run on part of the data." };
var root = new RootCommand("Hinton et al.'s distillation experiment on Fashion-MNIST.") { dataOption, outputOption, quickOption };
root.SetAction(parse =>
{
    try
    {
        return Run(parse.GetValue(dataOption)!, parse.GetValue(outputOption)!, parse.GetValue(quickOption));
    }
    catch (Exception e)
    {
        AnsiConsole.MarkupLine($"[red]FashionMnist failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();

static int Run(string dataFolder, string output, bool quick)
{
    if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 132;
    FashionMnistData data = FashionMnistData.Load(dataFolder);
    int trainCount = quick ? 10_000 : 60_000, teacherEpochs = quick ? 2 : 8, studentEpochs = quick ? 3 : 30;
    Tensor trainX = data.TrainImages[TensorIndex.Slice(0, trainCount)], trainY = data.TrainLabels[TensorIndex.Slice(0, trainCount)];
    AnsiConsole.MarkupLine($"Fashion-MNIST from {Markup.Escape(dataFolder)}: {trainCount:N0} training images, {data.TestLabels.shape[0]:N0} test images");

    Directory.CreateDirectory(output);
    string cache = Path.Combine(output, $"teacher-{trainCount}-{teacherEpochs}epochs.dat");
    manual_seed(1);
    var teacher = Networks.Cnn();
    if (File.Exists(cache)) teacher.load(cache);
    else
    {
        Networks.Fit("teacher CNN", [], teacher, DistillationObjective.Create().HardTargets(1.0).Build(), trainX, trainY, teacherEpochs);
        teacher.save(cache);
    }
    int teacherErrors = Networks.TestErrors(teacher, data);
    Tensor teacherLogits = Networks.Logits(teacher, trainX); // the cache: one teacher pass over the training set

    var rows = new List<(string Student, string Training, int Errors)>();
    foreach ((string name, int hidden) in new[] { ("2x800", 800), ("2x30", 30) })
    {
        var runs = new List<(string Training, DistillationObjective Objective)>
        {
            ("alone (hard labels)", DistillationObjective.Create().HardTargets(1.0).Build()),
            ("distilled, T = 4", DistillationObjective.Create().SoftTargets(0.9, temperature: 4.0).HardTargets(0.1).Build()),
            ("distilled, T = 8", DistillationObjective.Create().SoftTargets(0.9, temperature: 8.0).HardTargets(0.1).Build()),
        };
        if (hidden == 30)
        {
            runs[1] = ("distilled, T = 1", DistillationObjective.Create().SoftTargets(0.5, temperature: 1.0).HardTargets(0.5).Build());
            runs[2] = ("distilled, T = 2", DistillationObjective.Create().SoftTargets(0.3, temperature: 2.0).HardTargets(0.7).Build());
        }
        foreach (var (training, objective) in runs)
        {
            manual_seed(2);
            var student = Networks.Mlp(hidden);
            Networks.Fit($"{name} {training}", [Networks.CachedTeacher(teacherLogits)], student, objective, trainX, trainY, studentEpochs);
            rows.Add((name, training, Networks.TestErrors(student, data)));
        }
    }

    var table = new Table().AddColumns("model", "training", "test errors (of 10,000)", "gap to teacher closed");
    table.AddRow("teacher CNN", $"{teacherEpochs} epochs, hard labels", teacherErrors.ToString(CultureInfo.InvariantCulture), "");
    foreach (var group in rows.GroupBy(r => r.Student))
    {
        int alone = group.First().Errors;
        foreach (var r in group)
        {
            string closed = r.Training.StartsWith("alone", StringComparison.Ordinal) ? "" : ((double)(alone - r.Errors) / (alone - teacherErrors)).ToString("P0", CultureInfo.InvariantCulture);
            table.AddRow($"MLP {r.Student}", r.Training, r.Errors.ToString(CultureInfo.InvariantCulture), closed);
        }
    }
    AnsiConsole.Write(table);

    var plot = new Plot();
    string[] labels = [.. new[] { "teacher" }.Concat(rows.Select(r => $"{r.Student}\n{r.Training.Replace("distilled, ", "")}"))];
    plot.Add.Bars([teacherErrors, .. rows.Select(r => (double)r.Errors)]);
    plot.Axes.Bottom.SetTicks(Enumerable.Range(0, labels.Length).Select(i => (double)i).ToArray(), labels);
    plot.YLabel("test errors (of 10,000)");
    plot.Title("Fashion-MNIST: teacher, students alone and distilled");
    string path = Path.Combine(output, "test-errors.png");
    plot.SavePng(path, 1000, 480);
    AnsiConsole.MarkupLine($"Plot: {Markup.Escape(path)}");

    bool ok = rows.GroupBy(r => r.Student).All(g => g.Skip(1).Min(r => r.Errors) < g.First().Errors);
    if (!ok) AnsiConsole.MarkupLine("[red]For some student no distillation setting beat training alone.[/]");
    return ok ? 0 : 2;
}
