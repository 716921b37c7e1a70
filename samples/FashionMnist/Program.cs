// FashionMnist: Hinton, Vinyals and Dean's 2015 experiment, transposed to Fashion-MNIST. A small CNN teacher, a
// 2x800 and a tiny 2x30 MLP student, each trained alone and distilled; test errors out of 10,000. The teacher
// labels the training images and blends of them (its transfer set) once, and the students read those logits from
// memory (a cached teacher), so a distilled epoch costs what an epoch alone costs. See samples/FashionMnist/README.md.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FashionMnist;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Runtime;
using KnowledgeDistillation.Training;
using Samples.Shared;
using ScottPlot;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

var dataOption = new Option<string>("--data") { Description = "Folder with the four Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnistData.DebianFolder };
var outputOption = new Option<string>("--output") { Description = "Folder for the plot and the trained teacher.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "fashion-mnist") };
var quickOption = new Option<bool>("--quick") { Description = "A short run on part of the data (about a minute)." };
var deviceOption = SampleDevice.Option();
var root = new RootCommand("Hinton et al.'s distillation experiment on Fashion-MNIST.") { dataOption, outputOption, quickOption, deviceOption };
root.SetAction(parse =>
{
    try
    {
        return Run(parse.GetValue(dataOption)!, parse.GetValue(outputOption)!, parse.GetValue(quickOption) ? Settings.Quick : Settings.Full,
            DeviceSelection.Resolve(parse.GetValue(deviceOption)!));
    }
    catch (Exception e)
    {
        AnsiConsole.MarkupLine($"[red]FashionMnist failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();

static int Run(string dataFolder, string output, Settings settings, Device device)
{
    if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 132;
    var clock = Stopwatch.StartNew();
    FashionMnistData data = FashionMnistData.Load(dataFolder);
    int n = settings.TrainingImages;
    Tensor trainX = data.TrainImages[TensorIndex.Slice(0, n)], trainY = data.TrainLabels[TensorIndex.Slice(0, n)];
    AnsiConsole.MarkupLine($"Fashion-MNIST from {Markup.Escape(dataFolder)}: {n:N0} training images, {data.TestLabels.shape[0]:N0} test images");

    Directory.CreateDirectory(output);
    // The teacher always learns from all 60,000 images: in a quick run too it must be clearly better than the students.
    string teacherFile = Path.Combine(output, $"teacher-cnn-{settings.TeacherEpochs}epochs.dat");
    manual_seed(1);
    var teacher = Networks.Cnn();
    using var imagesOnly = new Augmentation(n, views: 1, maxBlend: 0, seed: 5);
    if (File.Exists(teacherFile))
    {
        teacher.load(teacherFile);
        teacher.to(device);
    }
    else
    {
        long all = data.TrainImages.shape[0];
        using var allImages = new Augmentation(all, views: 1, maxBlend: 0, seed: 5);
        Networks.Fit("teacher CNN", [], teacher, DistillationObjective.Create().HardTargets(1.0).Build(), data.TrainImages, data.TrainLabels, allImages,
            settings.TeacherEpochs, LearningRateDecay.Cosine, device);
        teacher.save(teacherFile);
    }
    int teacherErrors = Networks.TestErrors(teacher, data);

    // The cached teacher: its logits on the training images and on every blended view, computed once.
    using var blends = new Augmentation(n, settings.Views, maxBlend: 0.5, seed: 5);
    Tensor teacherLogits = Networks.Logits(teacher, trainX, blends);
    AnsiConsole.MarkupLine($"Teacher: {teacherErrors} test errors; its logits on {settings.Views} views of the training set cached");

    var rows = new List<(string Student, string Training, int Errors)>();
    foreach (StudentRun run in settings.Runs)
    {
        manual_seed(2);
        var student = Networks.Mlp(run.Hidden);
        Networks.Fit($"{run.Student} {run.Training}", run.Objective.UsesTeachers ? [Networks.CachedTeacher(teacherLogits, device)] : [], student, run.Objective,
            trainX, trainY, run.Blends ? blends : imagesOnly, settings.StudentEpochs, LearningRateDecay.Cosine, device);
        rows.Add((run.Student, run.Training, Networks.TestErrors(student, data)));
    }

    var table = new Table().AddColumns("model", "training", "test errors (of 10,000)", "gap to teacher closed");
    table.AddRow("teacher CNN", $"{settings.TeacherEpochs} epochs on 60,000 images", teacherErrors.ToString(CultureInfo.InvariantCulture), "");
    foreach (var group in rows.GroupBy(r => r.Student))
    {
        int alone = group.First().Errors;
        foreach (var r in group)
        {
            string closed = r == group.First() ? "" : ((double)(alone - r.Errors) / (alone - teacherErrors)).ToString("P0", CultureInfo.InvariantCulture);
            table.AddRow($"MLP {r.Student}", r.Training, r.Errors.ToString(CultureInfo.InvariantCulture), closed);
        }
    }
    AnsiConsole.Write(table);
    AnsiConsole.MarkupLine($"Students trained {settings.StudentEpochs} epochs each (Adam 1e-3, cosine decay, batch 128); total time {clock.Elapsed.TotalMinutes:F1} min");

    var plot = new Plot();
    string[] labels = [.. new[] { "teacher" }.Concat(rows.Select(r => $"{r.Student}\n{r.Training.Replace("distilled, ", "")}"))];
    plot.Add.Bars([teacherErrors, .. rows.Select(r => (double)r.Errors)]);
    plot.Axes.Bottom.SetTicks(Enumerable.Range(0, labels.Length).Select(i => (double)i).ToArray(), labels);
    plot.YLabel("test errors (of 10,000)");
    plot.Title("Fashion-MNIST: teacher, students alone and distilled");
    string path = Path.Combine(output, "test-errors.png");
    plot.SavePng(path, 1100, 500);
    AnsiConsole.MarkupLine($"Plot: {Markup.Escape(path)}");

    bool ok = rows.GroupBy(r => r.Student).All(g => g.Skip(1).All(r => r.Errors < g.First().Errors));
    if (!ok) AnsiConsole.MarkupLine("[red]A distilled student did not beat the same student trained alone.[/]");
    return ok ? 0 : 2;
}
