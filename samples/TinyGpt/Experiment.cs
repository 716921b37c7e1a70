using System.Diagnostics;
using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Generation;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Samples.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace TinyGpt;

/// <summary>The four students of the ablation: how the student is initialised, and what it learns from.</summary>
internal enum StudentKind
{
    /// <summary>Random initialisation, hard labels (the next byte) only.</summary>
    ScratchCE,

    /// <summary>Initialised from teacher layers 0 and 3, hard labels only: what initialisation alone gives.</summary>
    InitCE,

    /// <summary>Random initialisation, distilled: what distillation alone gives.</summary>
    ScratchKD,

    /// <summary>Initialised from teacher layers and distilled: the DistilGPT2 recipe.</summary>
    InitKD,

    /// <summary>Initialised from teacher layers and distilled on-policy (GKD): half the batches are the student's own samples.</summary>
    InitGKD,

    /// <summary>
    /// Initialised from teacher layers and distilled as <see cref="InitKD"/>, but only LoRA adapters (r = 16 on every
    /// attention and feed-forward projection) train, with activation checkpointing: the memory-saving variant.
    /// </summary>
    InitKDLora,
}

/// <summary>The distillation recipe of the KD students: soft-target KL at T with weight α, hard cross-entropy with 1 − α, hidden-state cosine.</summary>
internal sealed record Recipe(double Temperature, double SoftWeight, double HiddenWeight)
{
    public override string ToString() =>
        FormattableString.Invariant($"T = {Temperature}, {SoftWeight} soft + {1 - SoftWeight} hard{(HiddenWeight > 0 ? $" + {HiddenWeight} hidden-state cosine" : "")}");
}

/// <summary>Settings of one run of the sample.</summary>
internal sealed record Settings(string? CorpusPath, string Output, bool Quick, int QuickTeacherSteps, int TeacherMaxSteps, int StudentSteps, int Seeds,
    int ValidationBatches, int TestBatches, Recipe Recipe, Device Device, IReadOnlyList<StudentKind> Students)
{
    /// <summary>λ of the on-policy student: the share of its batches it samples itself.</summary>
    public double OnPolicyFraction { get; init; } = 0.5;

    /// <summary>β of the on-policy student's generalised JSD.</summary>
    public double JsdBeta { get; init; } = 0.5;
}

/// <summary>One student run: its perplexity on the validation split (for choices) and on the held-out test split (for the table).</summary>
/// <param name="Trainable">Parameters the optimizer updates (LoRA: the adapters only).</param>
/// <param name="PlannedPeak">MemoryPlan.Estimate's peak for the step, in bytes (measured peaks: docs/students-that-fit.md).</param>
internal sealed record StudentResult(StudentKind Kind, int Seed, double Validation, double Test, double Seconds, IReadOnlyList<(long Step, double Perplexity)> Curve,
    double SampleNll, IReadOnlyList<string> Samples, long Trainable = 0, long PlannedPeak = 0);

/// <summary>
/// The teacher (trained until it stops improving, cached) and the four students at the same budget — same steps,
/// batches, learning-rate schedule and seeds — each seed drawing the same training windows for every student.
/// </summary>
internal sealed class Experiment(Settings settings)
{
    private const int Context = 64, Batch = 32, CurveInterval = 100;

    /// <summary>On-policy batches split each 64-byte window into a 32-byte prompt and a 32-byte completion.</summary>
    public const int PromptLength = 32, CompletionLength = Context - PromptLength;

    /// <summary>Held-out test prompts whose sampled continuations the teacher scores.</summary>
    public const int JudgedPrompts = 256;

    public static GptConfig TeacherConfig => new()
    {
        VocabSize = 256, ContextLength = Context, Width = 128, Heads = 4, Layers = 4, FeedForwardWidth = 512, Dropout = 0.0,
    };

    public static string Describe(StudentKind kind) => kind switch
    {
        StudentKind.ScratchCE => "random init + CE",
        StudentKind.InitCE => "teacher-layer init + CE",
        StudentKind.ScratchKD => "random init + KD",
        StudentKind.InitKD => "teacher-layer init + KD",
        StudentKind.InitKDLora => "teacher-layer init + KD, LoRA r = 16 + checkpointing",
        _ => "teacher-layer init + on-policy GKD",
    };

    public (GptModel Teacher, TeacherRecord Record, bool Cached, double TeacherTest, double TeacherSampleNll, IReadOnlyList<StudentResult> Students) Run(Corpus corpus)
    {
        var batches = new TextBatches(corpus, Context, Batch);
        List<DistillationBatch<TokenBatch>> validation = batches.Validation(settings.ValidationBatches), test = batches.Test(settings.TestBatches);
        // Curves are cheap: a quarter of the validation batches, every 100 steps.
        List<DistillationBatch<TokenBatch>> curveBatches = validation.Take(Math.Max(1, validation.Count / 4)).ToList();

        (GptModel teacher, TeacherRecord record, bool cached) = new TeacherTraining(settings, TeacherConfig).TrainOrLoad(batches, validation);
        double teacherTest = TeacherTraining.Perplexity(teacher, test);
        Tensor prompts = batches.TestPrompts(JudgedPrompts, PromptLength);
        double teacherSampleNll = SampleQuality.TeacherNll(teacher, teacher, prompts).Nll;

        var results = new List<StudentResult>();
        for (int seed = 1; seed <= settings.Seeds; seed++)
        {
            foreach (StudentKind kind in settings.Students)
            {
                results.Add(TrainStudent(kind, seed, teacher, batches, validation, test, curveBatches, prompts));
            }
        }
        return (teacher, record, cached, teacherTest, teacherSampleNll, results);
    }

    private StudentResult TrainStudent(StudentKind kind, int seed, GptModel teacher, TextBatches batches, List<DistillationBatch<TokenBatch>> validation,
        List<DistillationBatch<TokenBatch>> test, List<DistillationBatch<TokenBatch>> curveBatches, Tensor prompts)
    {
        manual_seed(seed);
        bool fromTeacher = kind is StudentKind.InitCE or StudentKind.InitKD or StudentKind.InitGKD or StudentKind.InitKDLora;
        bool distilled = kind is StudentKind.ScratchKD or StudentKind.InitKD or StudentKind.InitGKD or StudentKind.InitKDLora, onPolicy = kind == StudentKind.InitGKD;
        GptModel student = fromTeacher
            ? StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = TeacherConfig.Layers / 2, Selection = LayerSelection.UniformSpread }).Model
            : new GptModel(TeacherConfig with { Layers = TeacherConfig.Layers / 2 });
        if (kind == StudentKind.InitKDLora)
        {
            Lora.Apply(student, new LoraOptions { Targets = [.. LoraTargets.GptBertAll], Rank = 16, Alpha = 32 });
            student.ActivationCheckpointing = true;
        }
        DistillationObjective objective = onPolicy ? OnPolicyObjective() : distilled ? Distillation(teacher, student) : DistillationObjective.Create().HardTargets(1.0).Build();
        var options = new DistillationTrainerOptions
        {
            MaxSteps = settings.StudentSteps, LearningRate = 2e-3, WarmupSteps = Math.Min(50, settings.StudentSteps / 10), Decay = LearningRateDecay.Cosine,
            MaxGradientNorm = 1.0, WeightDecay = 0.01, Device = settings.Device.ToString(), Seed = seed, LoggingInterval = 50,
            EvaluationInterval = CurveInterval,
        };
        var trainer = new DistillationTrainer<TokenBatch>(distilled ? [teacher] : [], student, objective, options);
        var curve = new List<(long, double)>();
        var timer = Stopwatch.StartNew();
        var onPolicyBatches = new OnPolicyBatches(student, teacher, OnPolicy(seed));
        Func<int, IEnumerable<DistillationBatch<TokenBatch>>> data = onPolicy
            ? epoch => onPolicyBatches.Batches(batches.PromptWindows(PromptLength), epoch)
            : _ => batches.Training();
        TrainingProgressBar.Show($"{Describe(kind)}, seed {seed}", settings.StudentSteps,
            progress => trainer.Train(data, curveBatches, callbacks: [new CurveRecorder(curve)], progress: progress));
        double seconds = timer.Elapsed.TotalSeconds;
        (double sampleNll, IReadOnlyList<string> samples) = SampleQuality.TeacherNll(student, teacher, prompts);
        long trainable = student.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
        long planned = MemoryPlan.Estimate(distilled ? teacher : null, student, Batch, Context, new MemoryPlanOptions { Temperature = onPolicy ? 1.0 : settings.Recipe.Temperature }).Total;
        return new StudentResult(kind, seed, trainer.Evaluate(validation).StudentMetric, trainer.Evaluate(test).StudentMetric, seconds, curve, sampleNll, samples,
            trainable, planned);
    }

    /// <summary>
    /// GKD as TRL's GKDTrainer runs it by default: λ = 0.5 (half the batches sampled from the student at temperature 1),
    /// generalised JSD with β = 0.5 at T = 1 on the completion tokens. Not tuned here.
    /// </summary>
    private OnPolicyOptions OnPolicy(int seed) => new()
    {
        StudentFraction = settings.OnPolicyFraction,
        Seed = seed,
        Generation = new GenerationOptions { MaxNewTokens = CompletionLength, Sample = true, Temperature = 1.0, Seed = 1000L * seed },
    };

    private DistillationObjective OnPolicyObjective() =>
        DistillationObjective.Create().GeneralizedJensenShannon(1.0, beta: settings.JsdBeta, temperature: 1.0).Build();

    private DistillationObjective Distillation(GptModel teacher, GptModel student)
    {
        Recipe recipe = settings.Recipe;
        DistillationObjectiveBuilder builder = DistillationObjective.Create().SoftTargets(recipe.SoftWeight, temperature: recipe.Temperature);
        if (recipe.SoftWeight < 1) builder.HardTargets(1 - recipe.SoftWeight);
        if (recipe.HiddenWeight > 0) builder.HiddenStateCosine(recipe.HiddenWeight, LayerSelection.UniformSpread.Map(teacher.Config, student.Config));
        return builder.Build();
    }

    private sealed class CurveRecorder(List<(long, double)> curve) : IDistillationCallback
    {
        public void OnEvaluation(EvaluationReport report, TrainerControl control) => curve.Add((report.Step, report.StudentMetric));
    }
}
