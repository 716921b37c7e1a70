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
var root = new RootCommand("Distillation methods compared on Fashion-MNIST with a CNN teacher and student.") { dataOption, outputOption, quickOption };
root.SetAction(parse =>
{
    try
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 132;
        Settings settings = parse.GetValue(quickOption) ? Settings.Quick : Settings.Full;
        string output = parse.GetValue(outputOption)!;
        var benchmark = new Benchmark(FashionMnistData.Load(parse.GetValue(dataOption)!), settings, output);
        var (teacherErrors, teacherParameters, studentParameters, results) = benchmark.Run(Methods.All);
        string table = Benchmark.Table(teacherErrors, teacherParameters, studentParameters, results, settings);
        File.WriteAllText(Path.Combine(output, "results.md"), table);
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
