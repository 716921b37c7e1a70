using System.Diagnostics;
using System.Globalization;
using System.Text;
using FashionMnist;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Onnx;
using Microsoft.ML.OnnxRuntime;
using ScottPlot;
using Spectre.Console;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace OnnxTeacherSample;

/// <summary>
/// The experiment. A fixed permutation of the 60,000 training images gives the labelled images (its first
/// <see cref="Settings.Labelled"/>), the validation images (the next <see cref="Settings.Validation"/>, used only to
/// choose the probe's penalty and the label-trained CNN's epochs) and the unlabelled transfer set (its first
/// <see cref="Settings.Transfer"/>, labels unused). Test images are never trained on.
/// </summary>
internal sealed class Experiment
{
    private readonly string _output, _cacheFolder;
    private readonly Settings _settings;
    private readonly SessionOptions _session;
    private readonly Tensor _transfer, _labelled, _labels, _validation, _validationLabels, _test, _testLabels;

    public Experiment(string dataFolder, string output, string cacheFolder, Settings settings, int threads)
    {
        if (threads < 1) throw new ArgumentException($"--threads must be at least 1; got {threads}.");
        _output = output;
        _cacheFolder = cacheFolder;
        _settings = settings;
        torch.set_num_threads(threads);
        _session = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };

        FashionMnistData data = FashionMnistData.Load(dataFolder, standardize: false);
        Tensor order = randperm(data.TrainImages.shape[0], generator: new Generator(0));
        _transfer = data.TrainImages.index_select(0, order[TensorIndex.Slice(0, settings.Transfer)]).DetachFromDisposeScope();
        Tensor labelledRows = order[TensorIndex.Slice(0, settings.Labelled)], validationRows = order[TensorIndex.Slice(settings.Labelled, settings.Labelled + settings.Validation)];
        _labelled = data.TrainImages.index_select(0, labelledRows).DetachFromDisposeScope();
        _labels = data.TrainLabels.index_select(0, labelledRows).DetachFromDisposeScope();
        _validation = data.TrainImages.index_select(0, validationRows).DetachFromDisposeScope();
        _validationLabels = data.TrainLabels.index_select(0, validationRows).DetachFromDisposeScope();
        _test = data.TestImages[TensorIndex.Slice(0, settings.Test)].DetachFromDisposeScope();
        _testLabels = data.TestLabels[TensorIndex.Slice(0, settings.Test)].DetachFromDisposeScope();
    }

    private string TransferCache => Path.Combine(_cacheFolder, $"resnet18-train-{_settings.Transfer}.kdtc");

    private string TestCache => Path.Combine(_cacheFolder, $"resnet18-test-{_settings.Test}.kdtc");

    /// <summary>Labels one shard of the transfer and test images (one process of an array job) and stops.</summary>
    public int LabelShard(TeacherCacheShard shard)
    {
        using var teacher = new ResNetTeacher(ResNetTeacher.DefaultModelFolder, _session);
        string a = TeacherLabels.LabelShard(teacher, _transfer, TransferCache, shard, "transfer set");
        string b = TeacherLabels.LabelShard(teacher, _test, TestCache, shard, "test set");
        AnsiConsole.MarkupLine($"Shard {shard}: {Markup.Escape(a)} and {Markup.Escape(b)}. Run again without --shard once all {shard.Count} shards exist to merge them and train.");
        return 0;
    }

    public int Run()
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 140;
        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(_output);
        AnsiConsole.MarkupLine($"Fashion-MNIST: {_settings.Labelled:N0} labelled, {_settings.Validation:N0} validation, {_settings.Transfer:N0} unlabelled transfer and {_settings.Test:N0} test images");

        Tensor teacherTransfer, teacherTest;
        string resnetPath;
        using (var teacher = new ResNetTeacher(ResNetTeacher.DefaultModelFolder, _session))
        {
            resnetPath = teacher.ResNetPath;
            using TeacherCache transferCache = TeacherLabels.Open(teacher, _transfer, TransferCache, "transfer set");
            using TeacherCache testCache = TeacherLabels.Open(teacher, _test, TestCache, "test set");
            teacherTransfer = transferCache.ReadValues(arange(_settings.Transfer)).DetachFromDisposeScope();
            teacherTest = testCache.ReadValues(arange(_settings.Test)).DetachFromDisposeScope();
        }

        var rows = new List<Row>
        {
            Probe("raw pixels", 784, null, _labelled.flatten(1), _validation.flatten(1), _test.flatten(1), null),
            Probe("ResNet-18 (teacher)", 512, null, teacherTransfer[TensorIndex.Slice(0, _settings.Labelled)],
                teacherTransfer[TensorIndex.Slice(_settings.Labelled, _settings.Labelled + _settings.Validation)], teacherTest, teacherTest),
        };

        Sequential? exported = null;
        using (TeacherCache transferCache = TeacherCache.Open(TransferCache))
        {
            var distilled = new List<Row>();
            var labelTrained = new List<Row>();
            var random = new List<Row>();
            for (int seed = 1; seed <= _settings.Seeds; seed++)
            {
                var watch = Stopwatch.StartNew();
                Sequential student = Fresh(seed);
                StudentNetwork.Distill(student, transferCache, _transfer, _settings.DistillEpochs, seed);
                distilled.Add(ProbeStudent("distilled CNN", student, teacherTest) with { Seconds = watch.Elapsed.TotalSeconds });
                exported ??= student;

                // The label-trained CNN: its epoch count is chosen on the validation images, like the probe's penalty.
                Row best = _settings.LabelEpochs.Select(epochs =>
                {
                    var w = Stopwatch.StartNew();
                    Sequential cnn = Fresh(seed);
                    StudentNetwork.TrainOnLabels(cnn, _labelled, _labels, epochs, seed);
                    return ProbeStudent($"CNN trained on the {_settings.Labelled:N0} labels", cnn, teacherTest) with { Seconds = w.Elapsed.TotalSeconds, Note = $"{epochs}" };
                }).MaxBy(r => r.Validation)!;
                labelTrained.Add(best);
                random.Add(ProbeStudent("CNN with random weights", Fresh(seed), teacherTest));
            }
            rows.Add(Row.Mean(distilled));
            rows.Add(Row.Mean(labelTrained));
            rows.Add(Row.Mean(random));
        }

        // Ship the first seed's student as ONNX, check ONNX Runtime agrees with TorchSharp, and time both models the same way.
        string studentPath = Path.Combine(_output, "student.onnx");
        OnnxExport.Export(exported!, [-1, 1, 28, 28], studentPath, options: new OnnxExportOptions { InputName = "image", OutputName = "embedding" });
        double exportError = ExportError(exported!, studentPath);
        double teacherSpeed = Speed.ImagesPerSecond(resnetPath, _session, [1, 3, 224, 224], _settings.TeacherSpeedImages);
        double studentSpeed = Speed.ImagesPerSecond(studentPath, _session, [1, 1, 28, 28], _settings.StudentSpeedImages);
        double studentBatchSpeed = Speed.ImagesPerSecond(studentPath, _session, [256, 1, 28, 28], _settings.StudentSpeedImages * 4);
        // ResNet-18 exists only as ONNX: its count is the float values stored in the file; the student's are its trainable parameters.
        long teacherParameters = OnnxParameters(resnetPath), studentParameters = exported!.parameters().Sum(p => p.numel());

        string report = Report(rows, teacherSpeed, studentSpeed, studentBatchSpeed, teacherParameters, studentParameters, resnetPath, studentPath, exportError, clock.Elapsed);
        File.WriteAllText(Path.Combine(_output, "results.md"), report);
        AnsiConsole.WriteLine(report);
        Plot(rows);
        return 0;
    }

    private Sequential Fresh(int seed)
    {
        manual_seed(100 + seed);
        return StudentNetwork.Create();
    }

    private Row ProbeStudent(string name, Sequential student, Tensor teacherTest) =>
        Probe(name, 512, student.parameters().Sum(p => p.numel()), StudentNetwork.Embed(student, _labelled), StudentNetwork.Embed(student, _validation),
            StudentNetwork.Embed(student, _test), teacherTest);

    private Row Probe(string name, int width, long? parameters, Tensor labelled, Tensor validation, Tensor test, Tensor? teacherTest)
    {
        LinearProbe.Result r = LinearProbe.Evaluate(labelled, _labels, validation, _validationLabels, test, _testLabels);
        double? cosine = teacherTest is null ? null : F.cosine_similarity(test, teacherTest, dim: 1).mean().item<float>();
        AnsiConsole.MarkupLine($"  {Markup.Escape(name)}: probe {r.TestAccuracy:P2} on test (validation {r.ValidationAccuracy:P2}, L2 {r.Penalty:G1})" + (cosine is { } c ? $", cosine to the teacher {c:F3}" : ""));
        return new Row(name, width, parameters, [r.TestAccuracy], r.ValidationAccuracy, cosine is { } cos ? [cos] : [], 0, "");
    }

    private double ExportError(Sequential student, string path)
    {
        using var scope = NewDisposeScope();
        Tensor images = _test[TensorIndex.Slice(0, 64)];
        Tensor expected = StudentNetwork.Embed(student, images);
        using var teacher = new OnnxTeacher(path, new OnnxTeacherOptions { SessionOptions = _session });
        using var output = teacher.Run(images, KnowledgeDistillation.Models.OutputRequest.LogitsOnly);
        return (output.Logits - expected).abs().max().item<float>();
    }

    private static long OnnxParameters(string path)
    {
        var model = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        return model.Graph.Initializer.Where(t => t.DataType == (int)Onnx.TensorProto.Types.DataType.Float).Sum(t => t.Dims.Aggregate(1L, (a, b) => a * b));
    }

    private string Report(List<Row> rows, double teacherSpeed, double studentSpeed, double studentBatchSpeed, long teacherParameters, long studentParameters,
        string resnetPath, string studentPath, double exportError, TimeSpan elapsed)
    {
        static string Pct(IReadOnlyList<double> v) => v.Count == 1 ? $"{100 * v[0]:F2}%" : $"{100 * v.Average():F2}% ± {100 * Spread(v):F2}";
        static string Cos(IReadOnlyList<double> v) => v.Count == 0 ? "—" : v.Count == 1 ? $"{v[0]:F3}" : $"{v.Average():F3} ± {Spread(v):F4}";
        var s = new StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture, $"Linear probes on {_settings.Labelled:N0} labelled images, tested on {_settings.Test:N0} test images (students: mean ± standard deviation over {_settings.Seeds} seed(s))");
        s.AppendLine();
        s.AppendLine("| features | width | probe test accuracy | cosine to ResNet-18 (test) | training time |");
        s.AppendLine("|---|---:|---:|---:|---:|");
        foreach (Row r in rows)
        {
            string time = r.Seconds > 0 ? $"{r.Seconds:F0} s per seed" + (r.Note.Length > 0 ? $" (epochs chosen on validation: {r.Note})" : "") : "—";
            s.AppendLine(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Width} | {Pct(r.Accuracies)} | {Cos(r.Cosines)} | {time} |");
        }
        s.AppendLine();
        s.AppendLine(CultureInfo.InvariantCulture, $"ONNX Runtime, {_session.IntraOpNumThreads} thread(s), same run (the teacher's time excludes its preprocessing model and the resize):");
        s.AppendLine();
        s.AppendLine("| model | parameters | ONNX file | images/s, batch 1 | images/s, batch 256 |");
        s.AppendLine("|---|---:|---:|---:|---:|");
        s.AppendLine(CultureInfo.InvariantCulture, $"| ResNet-18 (224×224×3) | {teacherParameters:N0} | {new FileInfo(resnetPath).Length / 1e6:F1} MB | {teacherSpeed:F1} | fixed batch 1 |");
        s.AppendLine(CultureInfo.InvariantCulture, $"| distilled CNN (28×28) | {studentParameters:N0} | {new FileInfo(studentPath).Length / 1e6:F2} MB | {studentSpeed:F0} | {studentBatchSpeed:F0} |");
        s.AppendLine();
        s.AppendLine(CultureInfo.InvariantCulture, $"Student / teacher: {(double)teacherParameters / studentParameters:F0}x fewer parameters, {studentSpeed / teacherSpeed:F0}x the images/s at batch 1 " +
            $"({studentBatchSpeed / teacherSpeed:F0}x at batch 256). Exported student vs TorchSharp: max |difference| {exportError:E1}. Total time {elapsed.TotalMinutes:F1} min.");
        return s.ToString();
    }

    private static double Spread(IReadOnlyList<double> v)
    {
        double mean = v.Average();
        return Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / Math.Max(1, v.Count - 1));
    }

    private void Plot(List<Row> rows)
    {
        var plot = new Plot();
        double[] means = rows.Select(r => 100 * r.Accuracies.Average()).ToArray();
        var bars = plot.Add.Bars(means);
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i].Accuracies.Count > 1) plot.Add.ErrorBar([i], [means[i]], [100 * Spread(rows[i].Accuracies)]);
        }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, rows.Count).Select(i => (double)i).ToArray(), rows.Select(r => r.Name.Replace(" (", "\n(").Replace(" on the", "\non the")).ToArray());
        plot.Axes.SetLimitsY(Math.Floor(means.Min() / 5) * 5 - 5, 100);
        plot.YLabel($"linear-probe test accuracy (%), {_settings.Labelled:N0} labels");
        plot.Title("Fashion-MNIST features: ResNet-18 teacher, distilled student and controls");
        string path = Path.Combine(_output, "probe-accuracy.png");
        plot.SavePng(path, 1100, 550);
        AnsiConsole.MarkupLine($"Plot: {Markup.Escape(path)}");
    }

    private sealed record Row(string Name, int Width, long? Parameters, IReadOnlyList<double> Accuracies, double Validation, IReadOnlyList<double> Cosines, double Seconds, string Note)
    {
        public static Row Mean(IReadOnlyList<Row> seeds) => seeds[0] with
        {
            Accuracies = seeds.SelectMany(r => r.Accuracies).ToList(),
            Cosines = seeds.SelectMany(r => r.Cosines).ToList(),
            Seconds = seeds.Average(r => r.Seconds),
            Note = string.Join(", ", seeds.Select(r => r.Note).Where(n => n.Length > 0).Distinct()),
        };
    }
}
