// DistilMiniLM: the DistilBERT recipe on a real pretrained BERT. all-MiniLM-L6-v2 (served on NuGet as an ONNX file) is
// the teacher; a 3-layer student built from its own layers and a fresh 2-layer, width-128 student learn its sentence
// embedding from unlabelled real text (emails, news, a novel), the teacher's outputs cached once. Every model is then
// judged by linear probes on real labelled tasks (spam, Reuters corn and grain) against label-trained, random and
// TF-IDF controls, and the students ship as ONNX and as Hugging Face folders. See samples/DistilMiniLM/README.md.
using System.CommandLine;
using DistilMiniLM;
using Microsoft.ML.OnnxRuntime;
using Spectre.Console;

var dataOption = new Option<string>("--data") { Description = "Folder for the downloaded npm datasets (SpamAssassin, Moby-Dick).", DefaultValueFactory = _ => Path.Combine("artifacts", "data") };
var reutersOption = new Option<string>("--reuters") { Description = "Folder with Weka's Reuters{Corn,Grain}-{train,test}.arff (Debian package weka).", DefaultValueFactory = _ => Corpora.WekaExamples };
var outputOption = new Option<string>("--output") { Description = "Folder for the table, the plot and the exported students.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "distil-minilm") };
var cacheOption = new Option<string>("--cache") { Description = "Folder for the unpacked teacher and its cached embeddings (reused by later runs).", DefaultValueFactory = _ => Path.Combine("artifacts", "cache", "distil-minilm") };
var quickOption = new Option<bool>("--quick") { Description = "A short run on a few hundred texts, one seed (under three minutes)." };
var sweepOption = new Option<bool>("--sweep") { Description = "Try the learning rates and losses of both students and their labels-only controls (seed 1) and write their validation scores to sweep.md; test scores are neither shown nor used." };
var fineTuneOption = new Option<bool>("--fine-tune-distilled") { Description = "Also fine-tune each distilled student on each task's labels exactly as its labels-only control is trained (DistilBERT's second phase); about a quarter longer." };
var threadsOption = new Option<int>("--threads") { Description = "Threads for ONNX Runtime and TorchSharp.", DefaultValueFactory = _ => Environment.ProcessorCount };
var root = new RootCommand("Distil all-MiniLM-L6-v2 (ONNX, from NuGet) into two smaller BERT students on real text, and judge them on real labels.")
{
    dataOption, reutersOption, outputOption, cacheOption, quickOption, sweepOption, fineTuneOption, threadsOption,
};
root.SetAction(parse =>
{
    try
    {
        var options = new Options(parse.GetValue(dataOption)!, parse.GetValue(reutersOption)!, parse.GetValue(outputOption)!, parse.GetValue(cacheOption)!,
            parse.GetValue(quickOption) ? Settings.Quick : Settings.Full, parse.GetValue(threadsOption), parse.GetValue(fineTuneOption));
        var experiment = new Experiment(options);
        return parse.GetValue(sweepOption) ? experiment.Sweep() : experiment.Run();
    }
    catch (Exception e) when (e is IOException or InvalidDataException or FormatException or ArgumentException or OnnxRuntimeException or HttpRequestException)
    {
        AnsiConsole.MarkupLine($"[red]DistilMiniLM failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();

namespace DistilMiniLM
{
    /// <summary>The command line's choices.</summary>
    internal sealed record Options(string Data, string Reuters, string Output, string Cache, Settings Settings, int Threads, bool FineTuneDistilled)
    {
        public int Threads { get; } = Threads >= 1 ? Threads : throw new ArgumentException($"--threads must be at least 1; got {Threads}.");
    }
}
