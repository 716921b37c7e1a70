// FashionMnist: Hinton, Vinyals and Dean's 2015 experiment, transposed to Fashion-MNIST. A small CNN teacher, a
// 2x800 and a tiny 2x30 MLP student, each trained alone and distilled; test errors out of 10,000. The teacher
// labels the training images and blends of them (its transfer set) once into the library's TeacherCache, and the
// students read those logits from disk (a CachedTeacher), so a distilled epoch costs what an epoch alone costs.
// Every student runs over several seeds. See samples/FashionMnist/README.md.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FashionMnist;
using KnowledgeDistillation.Caching;
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
    bool newTeacher = !File.Exists(teacherFile);
    if (newTeacher)
    {
        long all = data.TrainImages.shape[0];
        using var allImages = new Augmentation(all, views: 1, maxBlend: 0, seed: 5);
        Networks.Fit("teacher CNN", [], teacher, DistillationObjective.Create().HardTargets(1.0).Build(), data.TrainImages, data.TrainLabels, allImages,
            settings.TeacherEpochs, LearningRateDecay.Cosine, device, seed: 3);
        teacher.save(teacherFile);
    }
    else
    {
        teacher.load(teacherFile);
        teacher.to(device);
    }
    int teacherErrors = Networks.TestErrors(teacher, data);

    // The transfer set (the training images and their blends) is labelled by the teacher once, into a TeacherCache on disk.
    using var blends = new Augmentation(n, settings.Views, maxBlend: 0.5, seed: 5);
    string cacheFile = Path.Combine(output, $"teacher-{settings.TeacherEpochs}epochs-logits-{n}images-{settings.Views}views.kdtc");
    using TeacherCache cache = TeacherLabels.Open(cacheFile, teacher, trainX, blends, relabel: newTeacher);
    AnsiConsole.MarkupLine($"Teacher: {teacherErrors} test errors; its logits on {settings.Views} views of the training set in {Markup.Escape(cacheFile)} ({new FileInfo(cacheFile).Length / 1e6:F0} MB)");

    var runs = settings.Runs.ToList();
    var errors = runs.Select(_ => new List<int>()).ToList();
    for (int seed = 1; seed <= settings.Seeds; seed++)
    {
        for (int i = 0; i < runs.Count; i++)
        {
            StudentRun run = runs[i];
            manual_seed(seed + 1); // seed 1 reproduces the single-seed runs of earlier versions of this sample (manual_seed(2), trainer seed 3)
            var student = Networks.Mlp(run.Hidden);
            Networks.Fit($"{run.Student} {run.Training}, seed {seed}", run.Objective.UsesTeachers ? [TeacherLabels.Teacher(cache, n)] : [], student, run.Objective,
                trainX, trainY, run.Blends ? blends : imagesOnly, settings.StudentEpochs, LearningRateDecay.Cosine, device, seed: seed + 2);
            errors[i].Add(Networks.TestErrors(student, data));
            AnsiConsole.MarkupLine($"  {run.Student} {Markup.Escape(run.Training)}, seed {seed}: {errors[i][^1]} test errors ({clock.Elapsed.TotalMinutes:F1} min)");
        }
    }
    var rows = runs.Select((r, i) => new StudentResult(r.Student, r.Training, errors[i])).ToList();

    var table = new Table().AddColumns("model", "training", $"test errors (of 10,000), seeds 1-{settings.Seeds}", "mean ± sd", "gap to teacher closed");
    table.AddRow("teacher CNN", $"{settings.TeacherEpochs} epochs on 60,000 images", teacherErrors.ToString(CultureInfo.InvariantCulture), "", "");
    foreach (var group in rows.GroupBy(r => r.Student))
    {
        StudentResult alone = group.First();
        foreach (StudentResult r in group)
        {
            string closed = r == alone ? "" : $"{100 * r.GapClosed(alone, teacherErrors):F0}%";
            table.AddRow($"MLP {r.Student}", r.Training, string.Join(", ", r.Errors), $"{r.Mean:F0} ± {r.Deviation:F0}", closed);
        }
    }
    AnsiConsole.Write(table);
    AnsiConsole.MarkupLine($"Students trained {settings.StudentEpochs} epochs each (Adam 1e-3, cosine decay, batch 128); gap closed is the mean over seeds of " +
        $"(alone − distilled) / (alone − teacher); total time {clock.Elapsed.TotalMinutes:F1} min");

    var plot = new Plot();
    string[] labels = [.. new[] { "teacher" }.Concat(rows.Select(r => $"{r.Student}\n{r.Training.Replace("distilled, ", "")}"))];
    Bar[] bars = [new Bar { Position = 0, Value = teacherErrors }, .. rows.Select((r, i) => new Bar { Position = i + 1, Value = r.Mean, Error = r.Deviation })];
    plot.Add.Bars(bars);
    plot.Axes.Bottom.SetTicks(Enumerable.Range(0, labels.Length).Select(i => (double)i).ToArray(), labels);
    plot.YLabel($"test errors (of 10,000), mean ± sd of {settings.Seeds} seed(s)");
    plot.Title("Fashion-MNIST: teacher, students alone and distilled");
    string path = Path.Combine(output, "test-errors.png");
    plot.SavePng(path, 1100, 500);
    AnsiConsole.MarkupLine($"Plot: {Markup.Escape(path)}");

    bool ok = rows.GroupBy(r => r.Student).All(g => g.Skip(1).All(r => r.Mean < g.First().Mean));
    if (!ok) AnsiConsole.MarkupLine("[red]A distilled student did not beat the same student trained alone.[/]");
    return ok ? 0 : 2;
}
