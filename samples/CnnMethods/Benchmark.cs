using System.Diagnostics;
using System.Globalization;
using FashionMnist;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Samples.Shared;
using Spectre.Console;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CnnMethods;

/// <summary>
/// Trains the teacher once (or loads it), labels the training images once into a values cache (full logits), then
/// trains the student with every method and seed: same initialisation per seed, same optimizer, epochs and batches.
/// </summary>
internal sealed class Benchmark(FashionMnistData data, Settings settings, string output)
{
    private const int Batch = 128;
    private readonly Tensor _trainX = data.TrainImages[TensorIndex.Slice(0, settings.TrainingImages)];
    private readonly Tensor _trainY = data.TrainLabels[TensorIndex.Slice(0, settings.TrainingImages)];
    private readonly Tensor _testX = data.TestImages[TensorIndex.Slice(0, settings.TestImages)];
    private readonly Tensor _testY = data.TestLabels[TensorIndex.Slice(0, settings.TestImages)];

    public sealed record Result(string Method, IReadOnlyList<int> Errors, IReadOnlyList<double> Seconds);

    public (int TeacherErrors, long TeacherParameters, long StudentParameters, List<Result> Results) Run(IReadOnlyList<Method> methods)
    {
        Directory.CreateDirectory(output);
        Sequential teacher = Teacher();
        int teacherErrors = Networks.TestErrors(teacher, _testX, _testY);
        AnsiConsole.MarkupLine($"Teacher: {teacherErrors} test errors of {settings.TestImages:N0}");

        // The teacher's logits on the training images, computed once: a values cache (float32, exactly the logits).
        string cachePath = Path.Combine(output, $"teacher-logits-{settings.TrainingImages}.kdtc");
        if (!File.Exists(cachePath))
        {
            using TeacherCacheWriter writer = TeacherCacheWriter.ForValues(cachePath, ScalarType.Float32);
            using var noGrad = no_grad();
            teacher.eval();
            for (long start = 0; start < _trainX.shape[0]; start += 1000)
            {
                using var scope = NewDisposeScope();
                writer.Append(teacher.call(_trainX[TensorIndex.Slice(start, Math.Min(_trainX.shape[0], start + 1000))]));
            }
            writer.Complete();
        }
        using TeacherCache cache = TeacherCache.Open(cachePath);

        var results = new List<Result>();
        long studentParameters = 0;
        foreach (Method method in methods)
        {
            var errors = new List<int>();
            var seconds = new List<double>();
            for (int seed = 1; seed <= settings.Seeds; seed++)
            {
                manual_seed(100 + seed);
                Sequential student = Networks.Student();
                studentParameters = student.parameters().Sum(p => p.numel());
                var clock = Stopwatch.StartNew();
                Train(method, student, teacher, cache, seed);
                seconds.Add(clock.Elapsed.TotalSeconds);
                errors.Add(Networks.TestErrors(student, _testX, _testY));
                AnsiConsole.MarkupLine($"  {Markup.Escape(method.Name)}, seed {seed}: {errors[^1]} test errors, {seconds[^1]:F0} s");
            }
            results.Add(new Result(method.Name, errors, seconds));
        }
        return (teacherErrors, teacher.parameters().Sum(p => p.numel()), studentParameters, results);
    }

    private Sequential Teacher()
    {
        string path = Path.Combine(output, $"teacher-cnn-{settings.TrainingImages}-{settings.TeacherEpochs}epochs.dat");
        manual_seed(1);
        Sequential teacher = Networks.Teacher();
        if (File.Exists(path))
        {
            teacher.load(path);
            return teacher;
        }
        var objective = DistillationObjective.Create().HardTargets(1.0).Build();
        Fit("teacher", [], DistillationModel.FromDelegate<Sequential, Images>(teacher, (m, b, _) => new ModelOutput(m.call(b.Pixels))), objective, settings.TeacherEpochs, seed: 1);
        teacher.save(path);
        return teacher;
    }

    private void Train(Method method, Sequential student, Sequential teacher, TeacherCache cache, int seed)
    {
        long steps = settings.StudentEpochs * ((_trainX.shape[0] + Batch - 1) / Batch);
        DistillationObjective objective = method.Objective(steps, _trainX.shape[0]);
        IDistillationModel<Images>[] teachers = method.Teacher switch
        {
            TeacherUse.CachedLogits => [new CachedTeacher<Images>(cache, b => b.Rows)],
            TeacherUse.Live => [Networks.WithFeatures(teacher)],
            _ => [],
        };
        IModuleModel<Images> model = method.Teacher == TeacherUse.Live
            ? Networks.WithFeatures(student)
            : DistillationModel.FromDelegate<Sequential, Images>(student, (m, b, _) => new ModelOutput(m.call(b.Pixels)));
        teacher.eval();
        try
        {
            Fit($"{method.Name} (seed {seed})", teachers, model, objective, settings.StudentEpochs, seed);
        }
        finally
        {
            foreach (IDisposable disposable in teachers.OfType<IDisposable>().Append(model as IDisposable).OfType<IDisposable>()) disposable.Dispose();
        }
    }

    private void Fit(string name, IReadOnlyList<IDistillationModel<Images>> teachers, IModuleModel<Images> student, DistillationObjective objective, int epochs, int seed)
    {
        long count = _trainX.shape[0];
        IEnumerable<DistillationBatch<Images>> Epoch(int epoch)
        {
            Tensor order = randperm(count);
            for (long start = 0; start < count; start += Batch)
            {
                Tensor rows = order[TensorIndex.Slice(start, Math.Min(count, start + Batch))];
                yield return new DistillationBatch<Images>(new Images(_trainX.index_select(0, rows), rows), _trainY.index_select(0, rows))
                {
                    ExampleIndices = rows,
                    DisposeAfterUse = true,
                };
            }
        }
        var options = new DistillationTrainerOptions
        {
            Epochs = epochs, LearningRate = 1e-3, Decay = LearningRateDecay.Cosine, WeightDecay = 0, MaxGradientNorm = null, Device = "cpu", Seed = seed, LoggingInterval = 100,
        };
        var trainer = new DistillationTrainer<Images>(teachers, student, objective, options);
        TrainingProgressBar.Show(name, epochs * ((count + Batch - 1) / Batch), progress => trainer.Train(Epoch, progress: progress));
    }

    public static string Table(int teacherErrors, long teacherParameters, long studentParameters, List<Result> results, Settings settings)
    {
        static double Mean(IEnumerable<int> v) => v.Average();
        static string Spread(IReadOnlyList<int> v)
        {
            if (v.Count < 2) return "";
            double mean = v.Average();
            return $" ± {Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Count - 1)):F0}";
        }
        var s = new System.Text.StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture, $"Test errors of {settings.TestImages:N0} (mean ± standard deviation over {settings.Seeds} seed(s)); teacher ({teacherParameters:N0} parameters): {teacherErrors}; student: {studentParameters:N0} parameters, {settings.StudentEpochs} epochs on {settings.TrainingImages:N0} images.");
        s.AppendLine();
        s.AppendLine("| method | test errors | vs CE alone | training time per run |");
        s.AppendLine("|---|---:|---:|---:|");
        double baseline = Mean(results[0].Errors);
        foreach (Result r in results)
        {
            double mean = Mean(r.Errors);
            string delta = r == results[0] ? "" : $"{mean - baseline:+0;−0;0}";
            s.AppendLine(CultureInfo.InvariantCulture, $"| {r.Method} | {mean:F0}{Spread(r.Errors)} | {delta} | {r.Seconds.Average():F0} s |");
        }
        return s.ToString();
    }
}
