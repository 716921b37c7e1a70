using System.Globalization;
using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using Spectre.Console;
using TinyGpt;

namespace CrossTokenizerSample;

/// <summary>The run: corpus, teacher (TinyGpt's, cached), windows, students, the table.</summary>
internal static class Run
{
    private const int WindowBytes = 64, BatchSize = 16;

    private static readonly System.Text.Json.JsonSerializerOptions JsonLines = new() { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };

    public static int Execute(Settings settings, bool quick, string output, string teacherCache, int teacherMaxSteps)
    {
        Corpus corpus = Corpus.Load(null);
        var gpt2 = Gpt2Vocabulary.Load();
        var chunks = new ChunkBatches(gpt2, WindowBytes, BatchSize);
        List<CrossTokenizedText> validation = chunks.Fixed(corpus.Validation, settings.ValidationWindows), test = chunks.Fixed(corpus.Test, settings.TestWindows);
        AnsiConsole.MarkupLine($"Corpus: {Markup.Escape(corpus.Source)}; {settings.ValidationWindows:N0} validation and {settings.TestWindows:N0} test windows of {WindowBytes} bytes " +
            $"({validation.Average(t => t.StudentIds.Length):0.0} GPT-2 tokens each on average)");

        // TinyGpt's teacher, trained (or read from its cache) by TinyGpt's own code.
        var tinySettings = new TinyGpt.Settings(null, teacherCache, quick, QuickTeacherSteps: 200, TeacherMaxSteps: teacherMaxSteps, StudentSteps: 1, Seeds: 1,
            ValidationBatches: quick ? 10 : 40, TestBatches: 10, new Recipe(1, 1, 0), settings.Device, []);
        var byteBatches = new TextBatches(corpus, 64, 32);
        (GptModel teacher, TeacherRecord record, _) = new TeacherTraining(tinySettings, TinyGpt.Experiment.TeacherConfig).TrainOrLoad(byteBatches, byteBatches.Validation(tinySettings.ValidationBatches));
        double teacherValidation = BitsPerByte.Score(teacher, validation, student: false, settings.Device), teacherTest = BitsPerByte.Score(teacher, test, student: false, settings.Device);
        AnsiConsole.MarkupLine($"Teacher (bytes, {teacher.parameters().Sum(p => p.numel()):N0} parameters): {teacherTest:0.000} bits per byte on the test windows");

        Directory.CreateDirectory(output);
        // Each student's result as soon as it is known (one JSON line each), so that a long run interrupted keeps what it measured.
        string perStudent = Path.Combine(output, "students.jsonl");
        File.WriteAllText(perStudent, "");
        IReadOnlyList<StudentResult> results = new Experiment(settings, gpt2, chunks).Run(corpus, teacher, validation, test,
            result => File.AppendAllText(perStudent, System.Text.Json.JsonSerializer.Serialize(result, JsonLines) + "\n"));
        string table = Table(settings, teacherValidation, teacherTest, results);
        File.WriteAllText(Path.Combine(output, "results.md"), table);
        AnsiConsole.WriteLine(table);
        return 0;
    }

    private static string Table(Settings settings, double teacherValidation, double teacherTest, IReadOnlyList<StudentResult> results)
    {
        string F(double x) => x.ToString("0.0000", CultureInfo.InvariantCulture);
        var lines = new List<string>
        {
            $"Students: {settings.Steps:N0} steps of 16 windows, {settings.Seeds} seed(s); cross-tokenizer term weight {settings.Weight.ToString(CultureInfo.InvariantCulture)}, T = {settings.Temperature.ToString(CultureInfo.InvariantCulture)}" +
                (settings.MatchedWeight is null ? "" : $", hybrid weights {settings.MatchedWeight}/{settings.UnmatchedWeight}"),
            "",
            "| model | validation bits/byte | test bits/byte (mean ± sd over seeds) | per seed (test) | seconds per step |",
            "|---|---:|---:|---|---:|",
            $"| teacher (bytes, 4 layers) | {F(teacherValidation)} | {F(teacherTest)} | | |",
        };
        foreach (IGrouping<Method, StudentResult> group in results.GroupBy(r => r.Method))
        {
            double[] test = group.Select(r => r.Test).ToArray();
            double mean = test.Average(), sd = test.Length > 1 ? Math.Sqrt(test.Sum(x => (x - mean) * (x - mean)) / (test.Length - 1)) : 0;
            lines.Add($"| {Experiment.Describe(group.Key)} | {F(group.Average(r => r.Validation))} | {F(mean)} ± {F(sd)} | {string.Join(", ", test.Select(F))} | {group.Average(r => r.DistillSeconds):0.000} |");
        }
        return string.Join('\n', lines) + '\n';
    }
}
