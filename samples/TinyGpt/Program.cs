// TinyGpt: distil a byte-level GPT teacher into a student with half its layers (the DistilGPT2 recipe), with the
// controls that separate what distillation does from what initialisation does: four students at the same budget
// (random or teacher-layer initialisation, trained on the labels alone or distilled), several seeds, choices made on a
// validation split and the table read from a held-out test split. See samples/TinyGpt/README.md.
using KnowledgeDistillation.Pretrained;
using System.CommandLine;
using System.Globalization;
using KnowledgeDistillation.Runtime;
using KnowledgeDistillation.Students;
using Samples.Shared;
using Spectre.Console;
using TinyGpt;
using static TinyGpt.Format;

var corpusOption = new Option<string?>("--corpus") { Description = "A text file to train on (default: the .NET SDK's API documentation summaries)." };
var outputOption = new Option<string>("--output") { Description = "Folder for plots and the cached teacher.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "tinygpt") };
var quickOption = new Option<bool>("--quick") { Description = "A short run (under 2 minutes) that checks everything works; its teacher is undertrained." };
var seedsOption = new Option<int>("--seeds") { Description = "Seeds per student (the README's table uses 3).", DefaultValueFactory = _ => 1 };
var stepsOption = new Option<int?>("--student-steps") { Description = "Optimizer steps per student (default 1,000; 150 with --quick)." };
var temperatureOption = new Option<double>("--temperature") { Description = "Distillation temperature T (chosen on the validation split: see the README).", DefaultValueFactory = _ => 1.0 };
var softOption = new Option<double>("--soft-weight") { Description = "Weight α of the soft-target term; the hard term gets 1 − α.", DefaultValueFactory = _ => 1.0 };
var hiddenOption = new Option<double>("--hidden-weight") { Description = "Weight of the hidden-state cosine term (0, the default, turns it off).", DefaultValueFactory = _ => 0.0 };
var studentsOption = new Option<string>("--students") { Description = "Which students to train: any of scratch-ce, init-ce, scratch-kd, init-kd, init-gkd, init-kd-lora (LoRA r = 16 + activation checkpointing).", DefaultValueFactory = _ => "scratch-ce,init-ce,scratch-kd,init-kd,init-gkd" };
var lambdaOption = new Option<double>("--lambda") { Description = "λ of the on-policy student: the share of batches it samples itself (GKD).", DefaultValueFactory = _ => 0.5 };
var betaOption = new Option<double>("--beta") { Description = "β of the on-policy student's generalised JSD (0 forward KL, 1 reverse KL).", DefaultValueFactory = _ => 0.5 };
var teacherStepsOption = new Option<int>("--teacher-max-steps") { Description = "Cap on the teacher's constant-rate phase.", DefaultValueFactory = _ => 12_000 };
var teacherFolderOption = new Option<string?>("--teacher") { Description = "A Hugging Face causal LM folder (GPT-2, Llama, Qwen2, Mistral) to distil instead of training the byte-level teacher; the student is written back with PretrainedFolder.Save." };
var deviceOption = SampleDevice.Option();
var root = new RootCommand("Distil a byte-level GPT teacher into a half-depth student, with the controls that tell distillation from initialisation.")
{
    corpusOption, outputOption, quickOption, seedsOption, stepsOption, temperatureOption, softOption, hiddenOption, studentsOption, lambdaOption, betaOption, teacherStepsOption, teacherFolderOption, deviceOption,
};
root.SetAction(parse =>
{
    try
    {
        bool quick = parse.GetValue(quickOption);
        StudentKind[] students = parse.GetValue(studentsOption)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(Parse).ToArray();
        var settings = new Settings(parse.GetValue(corpusOption), parse.GetValue(outputOption)!, quick, QuickTeacherSteps: 200, parse.GetValue(teacherStepsOption),
            parse.GetValue(stepsOption) ?? (quick ? 150 : 1000), Math.Max(1, parse.GetValue(seedsOption)), ValidationBatches: quick ? 10 : 40, TestBatches: quick ? 10 : 40,
            new Recipe(parse.GetValue(temperatureOption), parse.GetValue(softOption), parse.GetValue(hiddenOption)), DeviceSelection.Resolve(parse.GetValue(deviceOption)!), students)
        {
            OnPolicyFraction = parse.GetValue(lambdaOption),
            JsdBeta = parse.GetValue(betaOption),
        };
        string? teacherFolder = parse.GetValue(teacherFolderOption);
        return teacherFolder is null ? Run(settings) : PretrainedDistillation.Run(settings, teacherFolder, Corpus.Load(settings.CorpusPath));
    }
    catch (Exception e)
    {
        AnsiConsole.MarkupLine($"[red]TinyGpt failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();

static StudentKind Parse(string name) => name.ToLowerInvariant() switch
{
    "scratch-ce" => StudentKind.ScratchCE,
    "init-ce" => StudentKind.InitCE,
    "scratch-kd" => StudentKind.ScratchKD,
    "init-kd" => StudentKind.InitKD,
    "init-gkd" => StudentKind.InitGKD,
    "init-kd-lora" => StudentKind.InitKDLora,
    _ => throw new ArgumentException($"--students: unknown student \"{name}\"; expected scratch-ce, init-ce, scratch-kd, init-kd, init-gkd or init-kd-lora."),
};

static int Run(Settings settings)
{
    if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 140; // tables stay readable in logs
    TorchRuntimeInfo info = TorchRuntimeInfo.Probe();
    AnsiConsole.MarkupLine($"TorchSharp {info.TorchSharpVersion} on {settings.Device}, {info.IntraOpThreads} CPU threads");
    Corpus corpus = Corpus.Load(settings.CorpusPath);
    AnsiConsole.MarkupLine($"Corpus: {Markup.Escape(corpus.Source)}: {corpus.Train.Length:N0} training, {corpus.Validation.Length:N0} validation and {corpus.Test.Length:N0} test bytes");
    AnsiConsole.MarkupLine($"Students: {settings.StudentSteps:N0} steps each, {settings.Seeds} seed(s); distilled with {Markup.Escape(settings.Recipe.ToString())}");

    var (teacher, record, cached, teacherTest, teacherSampleNll, students) = new Experiment(settings).Run(corpus);
    string teacherFolder = Path.Combine(settings.Output, "teacher-pretrained");
    PretrainedFolder.Save(teacher, teacherFolder);
    AnsiConsole.MarkupLine($"Teacher written as a Hugging Face GPT-2 folder to {Markup.Escape(teacherFolder)} (distil it again with --teacher {Markup.Escape(teacherFolder)})");
    AnsiConsole.MarkupLine(cached
        ? $"(cached, as first trained) {Markup.Escape(record.Summary())}"
        : Markup.Escape(record.Summary()));

    ModelSize teacherSize = ModelSize.Of(teacher), studentSize = ModelSize.Of(new KnowledgeDistillation.Transformers.GptModel(Experiment.TeacherConfig with { Layers = 2 }));
    var table = new Table().AddColumns("model", "parameters (trained)", "test perplexity", "validation perplexity", "teacher NLL of its samples", "train time (s)", "planned peak MB");
    table.AddRow("teacher (4 layers)", Count(teacherSize.Parameters), F(teacherTest), F(record.FinalPerplexity), F(teacherSampleNll), cached ? "cached" : F0(record.Seconds), "");
    foreach (var group in students.GroupBy(s => s.Kind))
    {
        long trained = group.First().Trainable;
        table.AddRow($"{Experiment.Describe(group.Key)} (2 layers)", Count(studentSize.Parameters) + (group.Key == StudentKind.InitKDLora ? $" ({Count(trained)})" : ""),
            Spread(group.Select(s => s.Test)), Spread(group.Select(s => s.Validation)), Spread(group.Select(s => s.SampleNll)), F0(group.Average(s => s.Seconds)),
            F0(group.First().PlannedPeak / (double)(1 << 20)));
    }
    AnsiConsole.Write(table);
    AnsiConsole.MarkupLine($"[grey]teacher NLL of its samples: the teacher's mean negative log-likelihood per byte of each model's sampled 32-byte continuations (T = 1) of {Experiment.JudgedPrompts} held-out test prompts; lower is text the teacher finds more plausible[/]");
    foreach (var group in students.Where(s => s.Seed == 1).GroupBy(s => s.Kind))
    {
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(Experiment.Describe(group.Key))}[/] (seed 1) samples:");
        foreach (string sample in group.First().Samples) AnsiConsole.MarkupLine($"  {Markup.Escape(sample)}");
    }
    if (settings.Seeds > 1) AnsiConsole.MarkupLine($"[grey]mean ± standard deviation over {settings.Seeds} seeds; test perplexity on the held-out split, validation on the split every choice was made on[/]");

    // Like with like: distillation against the same initialisation trained on the labels alone.
    bool? fromScratch = Verdict(students, StudentKind.ScratchKD, StudentKind.ScratchCE, "From a random initialisation");
    bool? overInit = Verdict(students, StudentKind.InitKD, StudentKind.InitCE, "From the teacher's layers");
    OnPolicyReport(students);

    string curvesPath = Plots.Curves(students, record.FinalPerplexity, settings.Output);
    string temperaturesPath = Plots.Temperatures(teacher, "Gets or sets the value of the ", settings.Output, out var rows);
    var probabilities = new Table().AddColumns("next byte", "T = 1", "T = 2", "T = 3", "T = 6");
    foreach (var (token, p) in rows) probabilities.AddRow(new[] { Markup.Escape(token) }.Concat(p.Select(v => v.ToString("0.000", CultureInfo.InvariantCulture))).ToArray());
    AnsiConsole.Write(probabilities);
    AnsiConsole.MarkupLine($"Plots: {Markup.Escape(curvesPath)}, {Markup.Escape(temperaturesPath)}");

    if (settings.Quick)
    {
        // A teacher trained for seconds has little to teach: quick mode checks that everything runs, not the verdicts.
        AnsiConsole.MarkupLine("[grey]--quick: the teacher trained for 200 steps, so the verdicts above are not checked; the default run checks them (exit code 2 if either fails).[/]");
        return 0;
    }
    return fromScratch == false || overInit == false ? 2 : 0;
}

static void OnPolicyReport(IReadOnlyList<StudentResult> students)
{
    var gkd = students.Where(s => s.Kind == StudentKind.InitGKD).ToDictionary(s => s.Seed);
    var kd = students.Where(s => s.Kind == StudentKind.InitKD).ToDictionary(s => s.Seed);
    if (gkd.Count == 0 || kd.Count == 0) return;
    double perplexity = gkd.Values.Average(s => s.Test) - kd.Values.Average(s => s.Test);
    double nll = gkd.Values.Average(s => s.SampleNll) - kd.Values.Average(s => s.SampleNll);
    AnsiConsole.MarkupLine($"On-policy (GKD) against off-policy KD, same initialisation and budget: test perplexity {perplexity:+0.000;-0.000}, " +
        $"teacher NLL of samples {nll:+0.000;-0.000} (negative is better; {gkd.Keys.Count(k => kd.ContainsKey(k) && gkd[k].SampleNll < kd[k].SampleNll)} of {gkd.Count} seeds better on samples).");
}

static bool? Verdict(IReadOnlyList<StudentResult> students, StudentKind distilled, StudentKind control, string label)
{
    var kd = students.Where(s => s.Kind == distilled).ToDictionary(s => s.Seed);
    var ce = students.Where(s => s.Kind == control).ToDictionary(s => s.Seed);
    if (kd.Count == 0 || ce.Count == 0) return null;
    double difference = kd.Values.Average(s => s.Test) - ce.Values.Average(s => s.Test);
    int wins = kd.Keys.Count(seed => ce.ContainsKey(seed) && kd[seed].Test < ce[seed].Test);
    bool better = difference < 0;
    AnsiConsole.MarkupLine($"{label}: distillation {(better ? "[green]improves[/]" : "[red]does not improve[/]")} the test perplexity " +
        $"{Experiment.Describe(control)} → {Experiment.Describe(distilled)}: {difference:+0.000;-0.000} ({wins} of {kd.Count} seeds better).");
    return better;
}
