using System.Diagnostics;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Samples.Shared;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace TinyGpt;

/// <summary>Settings of one run of the sample.</summary>
internal sealed record Settings(string? CorpusPath, string Output, int TeacherSteps, int StudentSteps, int ValidationBatches, double Temperature, int Seed, Device Device);

/// <summary>One model's row of the results table.</summary>
internal sealed record ModelResult(string Name, long Parameters, double Megabytes, double Perplexity, double TokensPerSecond, double TrainSeconds);

/// <summary>
/// The DistilGPT2 story at laptop scale: train a byte-level GPT teacher, build a student with half its layers
/// initialised from the teacher's (uniform selection), distil it with soft targets at temperature T + hard
/// cross-entropy + hidden-state cosine, and train the same student from scratch on hard labels for the same steps.
/// </summary>
internal sealed class Experiment(Settings settings)
{
    private const int Context = 64, Batch = 32;

    public static GptConfig TeacherConfig => new()
    {
        VocabSize = 256, ContextLength = Context, Width = 128, Heads = 4, Layers = 4, FeedForwardWidth = 512, Dropout = 0.0,
    };

    public (IReadOnlyList<ModelResult> Results, Curves Curves, GptModel Teacher) Run(Corpus corpus)
    {
        var batches = new TextBatches(corpus, Context, Batch);
        List<DistillationBatch<TokenBatch>> validation = batches.Validation(settings.ValidationBatches);

        var timer = Stopwatch.StartNew();
        GptModel teacher = TrainOrLoadTeacher(batches, out bool cached);
        double teacherSeconds = cached ? double.NaN : timer.Elapsed.TotalSeconds;

        var curves = new Curves();
        var options = new DistillationTrainerOptions
        {
            MaxSteps = settings.StudentSteps, LearningRate = 2e-3, WarmupSteps = Math.Min(50, settings.StudentSteps / 10), Decay = LearningRateDecay.Cosine,
            MaxGradientNorm = 1.0, WeightDecay = 0.01, Device = settings.Device.ToString(), Seed = settings.Seed, LoggingInterval = 50,
        };

        // Control: the student's shape, random initialisation, hard labels only (the teacher is not run).
        manual_seed(settings.Seed);
        var scratch = new GptModel(TeacherConfig with { Layers = TeacherConfig.Layers / 2 });
        timer.Restart();
        DistillationTrainer<TokenBatch> control = Train("student from scratch", teacher, scratch, DistillationObjective.Create().HardTargets(1.0).Build(), options, batches, curves.Scratch);
        double scratchSeconds = timer.Elapsed.TotalSeconds;

        // Distilled: half the layers, initialised from teacher layers (uniform spread keeps the first and the last).
        manual_seed(settings.Seed);
        Student<GptModel> student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = TeacherConfig.Layers / 2, Selection = LayerSelection.UniformSpread });
        LayerMap map = LayerSelection.UniformSpread.Map(teacher.Config, student.Model.Config);
        DistillationObjective objective = DistillationObjective.Create()
            .SoftTargets(0.5, temperature: settings.Temperature)
            .HardTargets(0.5)
            .HiddenStateCosine(0.1, map)
            .Build();
        timer.Restart();
        DistillationTrainer<TokenBatch> distillation = Train($"distilled student (layers {string.Join(", ", student.Transfer.TeacherLayers)})", teacher, student.Model, objective, options, batches, curves.Distilled);
        double distilledSeconds = timer.Elapsed.TotalSeconds;

        EvaluationReport distilled = distillation.Evaluate(validation);
        EvaluationReport alone = control.Evaluate(validation);

        return (
        [
            Measure("teacher (4 layers)", teacher, distilled.TeacherMetric, teacherSeconds, validation),
            Measure("student from scratch (2 layers)", scratch, alone.StudentMetric, scratchSeconds, validation),
            Measure("distilled student (2 layers)", student.Model, distilled.StudentMetric, distilledSeconds, validation),
        ], curves, teacher);
    }

    private GptModel TrainOrLoadTeacher(TextBatches batches, out bool cached)
    {
        Directory.CreateDirectory(settings.Output);
        string cache = Path.Combine(settings.Output, $"teacher-{TeacherConfig.Layers}x{TeacherConfig.Width}-{settings.TeacherSteps}steps-seed{settings.Seed}.dat");
        manual_seed(settings.Seed);
        var teacher = new GptModel(TeacherConfig);
        if (File.Exists(cache))
        {
            teacher.load(cache);
            teacher.to(settings.Device);
            AnsiConsole.MarkupLine($"[grey]Teacher loaded from {Markup.Escape(cache)}[/]");
            cached = true;
            return teacher;
        }

        // A plain TorchSharp language-model loop: the teacher is trained before any distillation.
        teacher.to(settings.Device);
        var optimizer = optim.AdamW(teacher.parameters(), 2e-3, weight_decay: 0.01);
        teacher.train();
        using IEnumerator<DistillationBatch<TokenBatch>> data = batches.Training().GetEnumerator();
        TrainingProgressBar.Show("teacher", settings.TeacherSteps, progress =>
        {
            for (int step = 0; step < settings.TeacherSteps; step++)
            {
                using var scope = NewDisposeScope();
                data.MoveNext();
                DistillationBatch<TokenBatch> batch = data.Current;
                double lr = LearningRateSchedule.At(step, settings.TeacherSteps, 2e-3, Math.Min(100, settings.TeacherSteps / 10), LearningRateDecay.Cosine);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                optimizer.zero_grad();
                Tensor logits = teacher.call(batch.Inputs.InputIds.to(settings.Device));
                nn.functional.cross_entropy(logits.reshape(-1, 256), batch.Labels!.to(settings.Device).reshape(-1)).backward();
                nn.utils.clip_grad_norm_(teacher.parameters(), 1.0);
                optimizer.step();
                batch.Inputs.InputIds.Dispose();
                batch.Labels.Dispose();
                progress.Report(new TrainingProgress(step + 1, settings.TeacherSteps, double.NaN));
            }
        });
        teacher.eval();
        teacher.save(cache);
        cached = false;
        return teacher;
    }

    private static DistillationTrainer<TokenBatch> Train(string name, GptModel teacher, GptModel student, DistillationObjective objective, DistillationTrainerOptions options,
        TextBatches batches, List<(long Step, double Loss)> curve)
    {
        var trainer = new DistillationTrainer<TokenBatch>(teacher, student, objective, options);
        TrainingProgressBar.Show(name, options.MaxSteps!.Value, progress => trainer.Train(_ => batches.Training(), callbacks: [new CurveRecorder(curve)], progress: progress));
        return trainer;
    }

    private static ModelResult Measure(string name, GptModel model, double perplexity, double trainSeconds, List<DistillationBatch<TokenBatch>> validation)
    {
        model.eval();
        using var noGrad = no_grad();
        var timer = Stopwatch.StartNew();
        long tokens = 0;
        foreach (DistillationBatch<TokenBatch> batch in validation)
        {
            using var scope = NewDisposeScope();
            model.call(batch.Inputs.InputIds.to(SampleDevice.Of(model)));
            tokens += batch.Inputs.InputIds.numel();
        }
        ModelSize size = ModelSize.Of(model);
        return new ModelResult(name, size.Parameters, size.Float32Bytes / 1e6, perplexity, tokens / timer.Elapsed.TotalSeconds, trainSeconds);
    }

    private sealed class CurveRecorder(List<(long, double)> curve) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (report.Step % 10 == 0 && report.Terms.TryGetValue("hard", out double hard)) curve.Add((report.Step, hard));
        }
    }
}

/// <summary>Training curves: the hard-label cross-entropy of each student per step.</summary>
internal sealed class Curves
{
    public List<(long Step, double Loss)> Scratch { get; } = [];

    public List<(long Step, double Loss)> Distilled { get; } = [];
}
