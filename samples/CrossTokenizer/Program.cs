// CrossTokenizer: a byte-level teacher (TinyGpt's, one token per byte) teaches students that read GPT-2's real BPE
// tokens — a teacher and a student with no tokenizer in common. Three students at the same budget: the next GPT-2
// token alone (CE), CE + ULD, CE + the GOLD-style hybrid; several seeds; scored in bits per byte, which does not depend
// on the tokenizer. Choices on the validation split, the table on the held-out test split. See README.md.
using System.CommandLine;
using System.Globalization;
using CrossTokenizerSample;
using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Runtime;
using Samples.Shared;
using Spectre.Console;

var quickOption = new Option<bool>("--quick") { Description = "A short run that checks everything works (a 200-step teacher, 6 steps per student)." };
var seedsOption = new Option<int>("--seeds") { Description = "Seeds per method (the README's table uses 3).", DefaultValueFactory = _ => 3 };
var stepsOption = new Option<int?>("--student-steps") { Description = "Optimizer steps per student (default 400; 6 with --quick)." };
var methodsOption = new Option<string>("--methods") { Description = "Any of ce, uld, hybrid.", DefaultValueFactory = _ => "ce,uld,hybrid" };
var weightOption = new Option<double>("--weight") { Description = "Weight λ of the cross-tokenizer term beside CE (chosen on the validation split: see the README).", DefaultValueFactory = _ => 1.0 };
var temperatureOption = new Option<double>("--temperature") { Description = "Temperature of both sides' distributions.", DefaultValueFactory = _ => 1.0 };
var matchedOption = new Option<double?>("--matched-weight") { Description = "The hybrid's weight on shared tokens (default: GOLD's, the shared share of the teacher's vocabulary)." };
var unmatchedOption = new Option<double?>("--unmatched-weight") { Description = "The hybrid's weight on the ULD part (default: 1 − the shared weight)." };
var outputOption = new Option<string>("--output") { Description = "Folder for results.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "cross-tokenizer") };
var teacherOption = new Option<string>("--teacher-cache") { Description = "Where TinyGpt caches its teacher (trained here when absent).", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "tinygpt") };
var teacherStepsOption = new Option<int>("--teacher-max-steps") { Description = "Cap on the teacher's constant-rate phase when it is trained here (TinyGpt's default).", DefaultValueFactory = _ => 12_000 };
var deviceOption = SampleDevice.Option();
var root = new RootCommand("Distil a byte-level teacher into GPT-2-tokenized students with ULD and the GOLD-style hybrid, in bits per byte.")
{
    quickOption, seedsOption, stepsOption, methodsOption, weightOption, temperatureOption, matchedOption, unmatchedOption, outputOption, teacherOption, teacherStepsOption, deviceOption,
};
root.SetAction(parse =>
{
    try
    {
        bool quick = parse.GetValue(quickOption);
        Method[] methods = parse.GetValue(methodsOption)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(m => m.ToLowerInvariant() switch
        {
            "ce" => Method.CE,
            "uld" => Method.Uld,
            "hybrid" => Method.Hybrid,
            _ => throw new ArgumentException($"--methods: \"{m}\" is not ce, uld or hybrid."),
        }).ToArray();
        var device = DeviceSelection.Resolve(parse.GetValue(deviceOption)!);
        var settings = new Settings(parse.GetValue(stepsOption) ?? (quick ? 6 : 400), quick ? 1 : Math.Max(1, parse.GetValue(seedsOption)), methods,
            parse.GetValue(weightOption), parse.GetValue(temperatureOption), parse.GetValue(matchedOption), parse.GetValue(unmatchedOption),
            quick ? 64 : 500, quick ? 64 : 1000, device);
        return Run.Execute(settings, quick, parse.GetValue(outputOption)!, parse.GetValue(teacherOption)!, parse.GetValue(teacherStepsOption));
    }
    catch (Exception e)
    {
        AnsiConsole.MarkupLine($"[red]CrossTokenizer failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();
