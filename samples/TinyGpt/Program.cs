// TinyGpt: distil a byte-level GPT teacher into a student with half its layers (the DistilGPT2 recipe) and compare
// it with the same student trained alone. See the README section "samples/TinyGpt" for the expected output.
using System.CommandLine;
using System.Globalization;
using KnowledgeDistillation.Runtime;
using Samples.Shared;
using Spectre.Console;
using TinyGpt;

var corpusOption = new Option<string?>("--corpus") { Description = "A text file to train on (default: the .NET SDK's API documentation summaries)." };
var outputOption = new Option<string>("--output") { Description = "Folder for plots and the cached teacher.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "tinygpt") };
var quickOption = new Option<bool>("--quick") { Description = "A short run (about 90 seconds) that checks everything works; its teacher is undertrained." };
var temperatureOption = new Option<double>("--temperature") { Description = "Distillation temperature T.", DefaultValueFactory = _ => 2.0 };
var seedOption = new Option<int>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 1 };
var deviceOption = SampleDevice.Option();
var root = new RootCommand("Distil a byte-level GPT teacher into a half-depth student and compare it with the student trained alone.")
{
    corpusOption, outputOption, quickOption, temperatureOption, seedOption, deviceOption,
};
root.SetAction(parse =>
{
    bool quick = parse.GetValue(quickOption);
    var settings = new Settings(parse.GetValue(corpusOption), parse.GetValue(outputOption)!, TeacherSteps: quick ? 200 : 1200, StudentSteps: quick ? 150 : 800,
        ValidationBatches: quick ? 10 : 40, parse.GetValue(temperatureOption), parse.GetValue(seedOption), DeviceSelection.Resolve(parse.GetValue(deviceOption)!));
    try
    {
        return Run(settings);
    }
    catch (Exception e)
    {
        AnsiConsole.MarkupLine($"[red]TinyGpt failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();

static int Run(Settings settings)
{
    if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 132; // tables stay readable in logs
    TorchRuntimeInfo info = TorchRuntimeInfo.Probe();
    AnsiConsole.MarkupLine($"TorchSharp {info.TorchSharpVersion} on {settings.Device}, {info.IntraOpThreads} CPU threads");
    Corpus corpus = Corpus.Load(settings.CorpusPath);
    AnsiConsole.MarkupLine($"Corpus: {Markup.Escape(corpus.Source)}: {corpus.Train.Length:N0} training and {corpus.Validation.Length:N0} validation bytes");

    var (results, curves, teacher) = new Experiment(settings).Run(corpus);

    var table = new Table().AddColumns("model", "parameters", "size (MB, fp32)", "val perplexity", "tokens/s", "train time (s)");
    foreach (ModelResult r in results)
    {
        table.AddRow(r.Name, r.Parameters.ToString("N0", CultureInfo.InvariantCulture), r.Megabytes.ToString("0.00", CultureInfo.InvariantCulture),
            r.Perplexity.ToString("0.000", CultureInfo.InvariantCulture), r.TokensPerSecond.ToString("N0", CultureInfo.InvariantCulture),
            double.IsNaN(r.TrainSeconds) ? "cached" : r.TrainSeconds.ToString("0", CultureInfo.InvariantCulture));
    }
    AnsiConsole.Write(table);
    ModelResult t = results[0], scratch = results[1], distilled = results[2];
    double retention = t.Perplexity / distilled.Perplexity, gapClosed = (scratch.Perplexity - distilled.Perplexity) / (scratch.Perplexity - t.Perplexity);
    AnsiConsole.MarkupLine($"Retention (teacher perplexity / distilled perplexity): {retention:P1}; the distilled student closes {gapClosed:P0} of the gap between the scratch student and the teacher.");

    string curvesPath = Plots.LossCurves(curves, settings.Output);
    string temperaturesPath = Plots.Temperatures(teacher, "Gets or sets the value of the ", settings.Output, out var rows);
    var probabilities = new Table().AddColumns("next byte", "T = 1", "T = 2", "T = 3", "T = 6");
    foreach (var (token, p) in rows) probabilities.AddRow(new[] { Markup.Escape(token) }.Concat(p.Select(v => v.ToString("0.000", CultureInfo.InvariantCulture))).ToArray());
    AnsiConsole.Write(probabilities);
    AnsiConsole.MarkupLine($"Plots: {Markup.Escape(curvesPath)}, {Markup.Escape(temperaturesPath)}");

    if (distilled.Perplexity >= scratch.Perplexity)
    {
        AnsiConsole.MarkupLine("[red]The distilled student did not beat the student trained alone.[/]");
        return 2;
    }
    return 0;
}
