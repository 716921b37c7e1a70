using System.Globalization;
using System.Text;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Samples.Shared;
using Spectre.Console;
using TorchSharp;
using static TinyGpt.Format;
using static TorchSharp.torch;

namespace TinyGpt;

/// <summary>
/// <c>--teacher &lt;folder&gt;</c>: distils any supported Hugging Face causal LM folder (GPT-2, Llama, Qwen2, Mistral) into a
/// student with half its layers, initialised from the teacher's layers, on the sample's corpus; trains the same
/// student on the labels alone as the control (same initialisation, same budget); then writes the distilled student
/// with <c>PretrainedFolder.Save</c> (the teacher's tokenizer files beside it) and loads it back to check it.
/// </summary>
internal static class PretrainedDistillation
{
    private const int Batch = 16;

    public static int Run(Settings settings, string folder, Corpus corpus)
    {
        PretrainedModel<IModuleModel<TokenBatch>> loaded = PretrainedFolder.Load(folder);
        IModuleModel<TokenBatch> teacher = loaded.Model;
        TransformerConfig config = loaded.Source.Config;
        AnsiConsole.MarkupLine($"Teacher: {loaded.Source.Architecture} from {Markup.Escape(folder)}, {config.Layers} layers, width {config.Width}, " +
            $"vocabulary {config.VocabSize:N0}, {ModelSize.Of(teacher.Module).Parameters:N0} parameters; {loaded.Report.Loaded.Count} tensors loaded, " +
            $"{loaded.Report.Unused.Count} unused, {loaded.Report.Initialized.Count} left as initialised");
        foreach (string note in loaded.Report.Notes) AnsiConsole.MarkupLine($"[grey]  {Markup.Escape(note)}[/]");
        if (config is BertConfig) throw new InvalidOperationException($"{folder} holds {loaded.Source.Architecture}, an encoder; TinyGpt distils causal language models.");

        int context = Math.Min(64, config.ContextLength);
        (long[] train, long[] validation, long[] test, string how) = Tokenize(folder, corpus, config.VocabSize);
        AnsiConsole.MarkupLine($"Corpus tokenized with {Markup.Escape(how)}: {train.Length:N0} training, {validation.Length:N0} validation, {test.Length:N0} test tokens; windows of {context}");
        teacher.Module.to(settings.Device);
        var batches = new TextBatches(train, validation, test, context, Batch);
        List<DistillationBatch<TokenBatch>> validationBatches = batches.Validation(settings.ValidationBatches), testBatches = batches.Test(settings.TestBatches);
        double teacherTest = TeacherTraining.Perplexity(teacher, testBatches);

        var table = new Table().AddColumns("model", "layers", "parameters", "test perplexity", "validation perplexity");
        table.AddRow("teacher", config.Layers.ToString(CultureInfo.InvariantCulture), Count(ModelSize.Of(teacher.Module).Parameters), F(teacherTest), F(TeacherTraining.Perplexity(teacher, validationBatches)));
        IModuleModel<TokenBatch>? saved = null;
        var results = new Dictionary<bool, List<(double Validation, double Test)>> { [false] = [], [true] = [] };
        for (int seed = 1; seed <= settings.Seeds; seed++)
        {
            foreach (bool distilled in new[] { false, true })
            {
                IModuleModel<TokenBatch> student = HalfDepth(teacher, seed);
                Train(settings, teacher, student, distilled, seed, batches, validationBatches);
                results[distilled].Add((TeacherTraining.Perplexity(student, validationBatches), TeacherTraining.Perplexity(student, testBatches)));
                if (distilled && seed == 1) saved = student;
            }
        }
        int studentLayers = Math.Max(1, config.Layers / 2);
        long studentParameters = ModelSize.Of(saved!.Module).Parameters;
        foreach (bool distilled in new[] { false, true })
        {
            table.AddRow($"teacher-layer init + {(distilled ? "KD" : "CE")}", studentLayers.ToString(CultureInfo.InvariantCulture), Count(studentParameters),
                Spread(results[distilled].Select(r => r.Test)), Spread(results[distilled].Select(r => r.Validation)));
        }
        AnsiConsole.Write(table);

        string output = Path.Combine(settings.Output, "student-pretrained");
        PretrainedFolder.Save(saved, output, new PretrainedSaveOptions { CopyTokenizerFrom = folder });
        IModuleModel<TokenBatch> back = PretrainedFolder.Load(output).Model;
        back.Module.to(settings.Device);
        double reloaded = TeacherTraining.Perplexity(back, testBatches);
        bool same = Math.Abs(reloaded - results[true][0].Test) <= 1e-6 * reloaded;
        AnsiConsole.MarkupLine($"Student written with PretrainedFolder.Save to {Markup.Escape(output)} ({string.Join(", ", Directory.GetFiles(output).Select(Path.GetFileName).Order(StringComparer.Ordinal))}); " +
            $"loaded back: test perplexity {F(reloaded)} {(same ? "[green]identical[/]" : "[red]differs[/]")}");
        return same ? 0 : 3;
    }

    /// <summary>The folder's tokenizer when it has one that Microsoft.ML.Tokenizers reads; bytes as ids for a byte-level model (vocabulary ≥ 256) without one.</summary>
    private static (long[] Train, long[] Validation, long[] Test, string How) Tokenize(string folder, Corpus corpus, int vocabulary)
    {
        PretrainedTokenizer? tokenizer = null;
        try
        {
            tokenizer = PretrainedTokenizer.Load(folder);
        }
        catch (FileNotFoundException) when (vocabulary >= 256)
        {
        }
        if (tokenizer is null)
        {
            static long[] Bytes(byte[] b) => b.Select(x => (long)x).ToArray();
            return (Bytes(corpus.Train), Bytes(corpus.Validation), Bytes(corpus.Test), "bytes as token ids (the folder has no tokenizer files)");
        }
        long[] Ids(byte[] text) => tokenizer.Encode(Encoding.ASCII.GetString(text), addSpecialTokens: false).Select(i => (long)i).ToArray();
        return (Ids(corpus.Train), Ids(corpus.Validation), Ids(corpus.Test), $"the folder's tokenizer, {tokenizer.Format}");
    }

    private static IModuleModel<TokenBatch> HalfDepth(IModuleModel<TokenBatch> teacher, int seed)
    {
        manual_seed(seed);
        var options = new StudentOptions { Layers = Math.Max(1, Layers(teacher) / 2), Selection = LayerSelection.UniformSpread };
        return teacher.Module switch
        {
            GptModel g => StudentFactory.FromTeacher(g, options).Model,
            LlamaModel l => StudentFactory.FromTeacher(l, options).Model,
            _ => throw new InvalidOperationException($"No student recipe for {teacher.Module.GetType().Name}."),
        };
    }

    private static int Layers(IModuleModel<TokenBatch> model) => model.Module switch { GptModel g => g.Config.Layers, LlamaModel l => l.Config.Layers, _ => 1 };

    private static void Train(Settings settings, IModuleModel<TokenBatch> teacher, IModuleModel<TokenBatch> student, bool distilled, int seed,
        TextBatches batches, List<DistillationBatch<TokenBatch>> validation)
    {
        DistillationObjectiveBuilder builder = DistillationObjective.Create();
        if (distilled) builder.SoftTargets(settings.Recipe.SoftWeight, temperature: settings.Recipe.Temperature);
        if (!distilled || settings.Recipe.SoftWeight < 1) builder.HardTargets(distilled ? 1 - settings.Recipe.SoftWeight : 1.0);
        DistillationObjective objective = builder.Build();
        var options = new DistillationTrainerOptions
        {
            MaxSteps = settings.StudentSteps, LearningRate = 5e-4, WarmupSteps = Math.Min(50, settings.StudentSteps / 10), Decay = LearningRateDecay.Cosine,
            MaxGradientNorm = 1.0, WeightDecay = 0.01, Device = settings.Device.ToString(), Seed = seed, LoggingInterval = 50,
        };
        var trainer = new DistillationTrainer<TokenBatch>(distilled ? [teacher] : [], student, objective, options);
        TrainingProgressBar.Show($"teacher-layer init + {(distilled ? "KD" : "CE")}, seed {seed}", settings.StudentSteps,
            progress => trainer.Train(_ => batches.Training(), validation.Take(2).ToList(), progress: progress));
    }
}
