using System.Diagnostics;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TinyGpt;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// The offline teacher cache on the TinyGpt sample's data and models: a fixed training set of windows, the teacher
/// run once over it into a top-k cache, then the same half-depth student distilled for the same epochs from the
/// running teacher (full logits) and from the cache; epoch times, bytes per token and validation perplexity.
/// </summary>
internal static class TeacherCacheExperiment
{
    private sealed class EpochTimer(List<double> seconds) : IDistillationCallback
    {
        private readonly Stopwatch _timer = Stopwatch.StartNew();
        private int _epoch;

        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (report.Epoch == _epoch) return;
            seconds.Add(_timer.Elapsed.TotalSeconds); // the first step of a new epoch ended: close the previous epoch at the step before
            _timer.Restart();
            _epoch = report.Epoch;
        }

        public void OnTrainingEnd(TrainingResult result) => seconds.Add(_timer.Elapsed.TotalSeconds);
    }

    public static int Run(bool quick)
    {
        int teacherSteps = quick ? 200 : 1200, trainingBatches = quick ? 40 : 200, epochs = quick ? 2 : 4;
        string folder = Path.Combine("artifacts", "benchmarks", "teacher-cache");
        Directory.CreateDirectory(folder);
        Corpus corpus = Corpus.Load(null);
        var batches = new TextBatches(corpus, Workloads.Context, Workloads.Batch);
        List<DistillationBatch<TokenBatch>> validation = batches.Validation(quick ? 10 : 40);
        GptModel teacher = TrainOrLoadTeacher(batches, teacherSteps, Path.Combine(folder, $"teacher-{teacherSteps}steps.dat"));

        // A fixed training set: each window gets an example index, which is where the cache keeps its teacher targets.
        manual_seed(7);
        List<DistillationBatch<TokenBatch>> training = batches.Training().Take(trainingBatches).Select((b, i) =>
            b with { Inputs = b.Inputs with { ExampleIndices = arange(i * (long)Workloads.Batch, (i + 1L) * Workloads.Batch).DetachFromDisposeScope() }, DisposeAfterUse = false }).ToList();
        long tokens = trainingBatches * (long)Workloads.Batch * Workloads.Context;
        Console.WriteLine($"Training set: {trainingBatches * Workloads.Batch:N0} windows of {Workloads.Context} bytes ({tokens:N0} tokens); {epochs} epochs per run; corpus: {corpus.Source}");

        var results = new List<(string Name, double Perplexity, List<double> EpochSeconds)>();
        results.Add(Distil("running teacher (full logits)", teacher, teacher, training, validation, epochs));
        foreach (int k in quick ? new[] { 32 } : new[] { 32, 8 })
        {
            string path = Path.Combine(folder, $"teacher-top{k}.kdtc");
            var timer = Stopwatch.StartNew();
            using (var writer = new TeacherCacheWriter(path, k, Workloads.Temperature))
            using (no_grad())
            {
                teacher.eval();
                foreach (DistillationBatch<TokenBatch> batch in training)
                {
                    using var scope = NewDisposeScope();
                    writer.Append(teacher.call(batch.Inputs.InputIds));
                }
                writer.Complete();
            }
            double buildSeconds = timer.Elapsed.TotalSeconds;
            using TeacherCache cache = TeacherCache.Open(path);
            long fileBytes = new FileInfo(path).Length;
            Console.WriteLine($"top-{k} cache: built in {buildSeconds:F1} s, {fileBytes / 1e6:F1} MB, {cache.BytesPerRow} bytes per token " +
                $"(float32 logits: {4 * Workloads.Vocabulary}, float16: {2 * Workloads.Vocabulary}; {4.0 * Workloads.Vocabulary / cache.BytesPerRow:F1}x smaller than float32)");
            results.Add(Distil($"cache, top-{k} + tail, float16", teacher, new CachedTeacher<TokenBatch>(cache, b => b.ExampleIndices!), training, validation, epochs));
        }

        double reference = results[0].Perplexity, referenceEpoch = results[0].EpochSeconds.Average();
        Console.WriteLine();
        Console.WriteLine("| teacher source | mean epoch time | epoch time vs running teacher | validation perplexity | vs full logits |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var (name, perplexity, epochSeconds) in results)
        {
            Console.WriteLine($"| {name} | {epochSeconds.Average():F1} s | {epochSeconds.Average() / referenceEpoch:F2} | {perplexity:F3} | {(perplexity / reference - 1):+0.0%;-0.0%} |");
        }
        Console.WriteLine($"(epoch times: {string.Join("; ", results.Select(r => $"{r.Name}: {string.Join(", ", r.EpochSeconds.Select(s => s.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)))}"))})");
        return 0;
    }

    private static (string, double, List<double>) Distil(string name, GptModel teacher, IDistillationModel<TokenBatch> source, List<DistillationBatch<TokenBatch>> training,
        List<DistillationBatch<TokenBatch>> validation, int epochs)
    {
        manual_seed(11);
        GptModel student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = Workloads.Teacher.Layers / 2, Selection = LayerSelection.UniformSpread }).Model;
        DistillationTrainerOptions options = Workloads.Options(epochs * (long)training.Count);
        options.WarmupSteps = 50;
        options.Decay = LearningRateDecay.Cosine;
        var trainer = new DistillationTrainer<TokenBatch>(source, student, Workloads.Objective(), options);
        var epochSeconds = new List<double>();
        trainer.Train(_ => randperm(training.Count).data<long>().ToArray().Select(i => training[(int)i]), callbacks: [new EpochTimer(epochSeconds)]);
        double perplexity = trainer.Evaluate(validation).StudentMetric;
        Console.WriteLine($"{name}: validation perplexity {perplexity:F3}, epochs {string.Join(", ", epochSeconds.Select(s => $"{s:F1} s"))}");
        return (name, perplexity, epochSeconds);
    }

    private static GptModel TrainOrLoadTeacher(TextBatches batches, int steps, string path)
    {
        manual_seed(1);
        var teacher = new GptModel(Workloads.Teacher);
        if (File.Exists(path))
        {
            teacher.load(path);
            teacher.eval();
            return teacher;
        }
        // Trained as the TinyGpt sample trains its teacher: AdamW 2e-3, warm-up then cosine decay, clipping at 1.
        DistillationTrainerOptions options = Workloads.Options(steps);
        options.WarmupSteps = Math.Min(100, steps / 10);
        options.Decay = LearningRateDecay.Cosine;
        var timer = Stopwatch.StartNew();
        new DistillationTrainer<TokenBatch>([], teacher, KnowledgeDistillation.Objectives.DistillationObjective.Create().HardTargets(1.0).Build(), options)
            .Train(_ => batches.Training());
        Console.WriteLine($"teacher trained for {steps} steps in {timer.Elapsed.TotalSeconds:F0} s");
        teacher.eval();
        teacher.save(path);
        return teacher;
    }
}
