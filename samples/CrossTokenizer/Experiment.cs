using System.Diagnostics;
using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Samples.Shared;
using static TorchSharp.torch;

namespace CrossTokenizerSample;

/// <summary>How a student learns: the next GPT-2 token alone, or also from the byte-level teacher through one of the cross-tokenizer losses.</summary>
internal enum Method { CE, Uld, Hybrid }

/// <summary>Settings of one run.</summary>
internal sealed record Settings(int Steps, int Seeds, IReadOnlyList<Method> Methods, double Weight, double Temperature, double? MatchedWeight, double? UnmatchedWeight,
    int ValidationWindows, int TestWindows, Device Device);

/// <summary>One student: its bits per byte on the validation split (for choices) and on the held-out test split (for the table).</summary>
internal sealed record StudentResult(Method Method, int Seed, double Validation, double Test, double Seconds, double DistillSeconds);

/// <summary>Students that read GPT-2 tokens, at the same budget (steps, windows, schedule, seeds), learning from the labels alone or also from the byte-level teacher.</summary>
internal sealed class Experiment(Settings settings, Gpt2Vocabulary gpt2, ChunkBatches chunks)
{
    public static GptConfig StudentConfig => new()
    {
        VocabSize = Gpt2Vocabulary.Size, ContextLength = 64, Width = 128, Heads = 4, Layers = 2, FeedForwardWidth = 512, Dropout = 0.0,
    };

    public static string Describe(Method method) => method switch
    {
        Method.CE => "CE (GPT-2 tokens alone)",
        Method.Uld => "CE + ULD",
        _ => "CE + hybrid (GOLD-style)",
    };

    public IReadOnlyList<StudentResult> Run(TinyGpt.Corpus corpus, GptModel teacher, List<CrossTokenizedText> validation, List<CrossTokenizedText> test, Action<StudentResult> finished)
    {
        VocabularyMatch match = VocabularyMatch.Between(gpt2.Bytes, TokenByteStrings.Bytes());
        var results = new List<StudentResult>();
        for (int seed = 1; seed <= settings.Seeds; seed++)
        {
            foreach (Method method in settings.Methods)
            {
                results.Add(Train(method, seed, corpus, teacher, match, validation, test));
                finished(results[^1]);
            }
        }
        return results;
    }

    private StudentResult Train(Method method, int seed, TinyGpt.Corpus corpus, GptModel teacher, VocabularyMatch match, List<CrossTokenizedText> validation, List<CrossTokenizedText> test)
    {
        manual_seed(seed);
        var student = new GptModel(StudentConfig);
        DistillationObjectiveBuilder builder = DistillationObjective.Create().HardTargets(1.0);
        DistillationObjective objective = method switch
        {
            Method.CE => builder.Build(),
            Method.Uld => builder.UniversalLogitDistillation(settings.Weight, settings.Temperature).Build(),
            _ => builder.CrossTokenizerHybrid(settings.Weight, match, matchedWeight: settings.MatchedWeight, unmatchedWeight: settings.UnmatchedWeight, temperature: settings.Temperature).Build(),
        };
        var options = new DistillationTrainerOptions
        {
            MaxSteps = settings.Steps, LearningRate = 2e-3, WarmupSteps = Math.Min(50, settings.Steps / 10), Decay = LearningRateDecay.Cosine,
            MaxGradientNorm = 1.0, WeightDecay = 0.01, Device = settings.Device.ToString(), Seed = seed, LoggingInterval = 50,
        };
        IDistillationModel<CrossTokenizerBatch>[] teachers = method == Method.CE ? [] : [CrossTokenizerModels.Teacher(teacher)];
        var trainer = new DistillationTrainer<CrossTokenizerBatch>(teachers, CrossTokenizerModels.Student(student), objective, options);
        var timer = Stopwatch.StartNew();
        TrainingProgressBar.Show($"{Describe(method)}, seed {seed}", settings.Steps, progress => trainer.Train(_ => chunks.Training(corpus.Train, seed), progress: progress));
        double seconds = timer.Elapsed.TotalSeconds;
        return new StudentResult(method, seed, BitsPerByte.Score(student, validation, student: true, settings.Device), BitsPerByte.Score(student, test, student: true, settings.Device),
            seconds, seconds / settings.Steps);
    }
}
