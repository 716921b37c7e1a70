// CnnMethods: the distillation methods toolkits are compared on (KD, DKD, DIST, logit standardisation, FitNets,
// attention transfer, CRD, RKD), each distilling the FashionMnist sample's CNN teacher into a small CNN student with
// its published weights, the same budget and three seeds. See samples/CnnMethods/README.md.
using System.CommandLine;
using CnnMethods;
using FashionMnist;
using Spectre.Console;

var dataOption = new Option<string>("--data") { Description = "Folder with the four Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnistData.DebianFolder };
var outputOption = new Option<string>("--output") { Description = "Folder for the table, the teacher and its cached logits.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "cnn-methods") };
var quickOption = new Option<bool>("--quick") { Description = "Every method once on a few thousand images (under two minutes)." };
var epochsOption = new Option<int?>("--epochs") { Description = "Student epochs for every method (default 10; 2 with --quick)." };
var methodsOption = new Option<string[]>("--methods")
{
    Description = $"Only these methods, besides CE alone (the baseline): {string.Join(", ", Methods.All.Select(m => m.Key))}.",
    AllowMultipleArgumentsPerToken = true,
};
var root = new RootCommand("Distillation methods compared on Fashion-MNIST with a CNN teacher and student.") { dataOption, outputOption, quickOption, epochsOption, methodsOption };
root.SetAction(parse =>
{
    try
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 132;
        Settings settings = parse.GetValue(quickOption) ? Settings.Quick : Settings.Full;
        string resultsFile = "results.md";
        if (parse.GetValue(epochsOption) is int epochs)
        {
            if (epochs < 1) throw new ArgumentException($"--epochs must be at least 1; got {epochs}.");
            settings = settings with { StudentEpochs = epochs };
            resultsFile = $"results-{epochs}epochs.md"; // beside, not over, the default schedule's table
        }
        IReadOnlyList<Method> methods = Methods.Select(parse.GetValue(methodsOption) ?? []);
        string output = parse.GetValue(outputOption)!;
        var benchmark = new Benchmark(FashionMnistData.Load(parse.GetValue(dataOption)!), settings, output);
        var (teacherErrors, teacherParameters, studentParameters, results) = benchmark.Run(methods);
        string table = Benchmark.Table(teacherErrors, teacherParameters, studentParameters, results, settings);
        File.WriteAllText(Path.Combine(output, resultsFile), table);
        AnsiConsole.WriteLine(table);
        return 0;
    }
    catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException)
    {
        AnsiConsole.MarkupLine($"[red]CnnMethods failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();
