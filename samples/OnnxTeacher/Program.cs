// OnnxTeacher: label-free feature distillation from a real pretrained network that nobody here trained. ML.NET's
// ImageNet ResNet-18 (an ONNX file from NuGet) embeds Fashion-MNIST images (resized to 224×224); a small CNN on the
// 28×28 images learns to reproduce that 512-d embedding on unlabelled images, the teacher's outputs cached on disk
// once. Every model is then judged by a linear probe on 1,000 labelled images, and the student ships as ONNX.
// See samples/OnnxTeacher/README.md.
using System.CommandLine;
using System.Diagnostics;
using FashionMnist;
using KnowledgeDistillation.Caching;
using Microsoft.ML.OnnxRuntime;
using OnnxTeacherSample;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

var dataOption = new Option<string>("--data") { Description = "Folder with the four Fashion-MNIST IDX files.", DefaultValueFactory = _ => FashionMnistData.DebianFolder };
var outputOption = new Option<string>("--output") { Description = "Folder for the table, the plot and the exported student.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "onnx-teacher") };
var cacheOption = new Option<string>("--cache") { Description = "Folder for the teacher's cached embeddings (reused by later runs).", DefaultValueFactory = _ => Path.Combine("artifacts", "cache", "onnx-teacher") };
var quickOption = new Option<bool>("--quick") { Description = "A short run on a few hundred images (under two minutes)." };
var shardOption = new Option<string?>("--shard")
{
    Description = "Label only shard i/N of the images into the cache folder and exit; a later run without --shard merges the shards. " +
        "Defaults to KD_SHARD, a Kubernetes Indexed Job (JOB_COMPLETION_INDEX with KD_SHARD_COUNT) or a Slurm array (SLURM_ARRAY_TASK_ID/COUNT) when set.",
};
var threadsOption = new Option<int>("--threads") { Description = "Threads for ONNX Runtime and TorchSharp.", DefaultValueFactory = _ => Environment.ProcessorCount };
var root = new RootCommand("Distil ML.NET's pretrained ResNet-18 (ONNX) into a small CNN on Fashion-MNIST, without labels.")
{
    dataOption, outputOption, cacheOption, quickOption, shardOption, threadsOption,
};
root.SetAction(parse =>
{
    try
    {
        string? shardText = parse.GetValue(shardOption);
        TeacherCacheShard? shard = shardText is null ? TeacherCacheShard.FromEnvironment() : TeacherCacheShard.Parse(shardText);
        var experiment = new Experiment(parse.GetValue(dataOption)!, parse.GetValue(outputOption)!, parse.GetValue(cacheOption)!,
            parse.GetValue(quickOption) ? Settings.Quick : Settings.Full, parse.GetValue(threadsOption));
        return shard is { } s ? experiment.LabelShard(s) : experiment.Run();
    }
    catch (Exception e) when (e is IOException or InvalidDataException or FormatException or ArgumentException or OnnxRuntimeException)
    {
        AnsiConsole.MarkupLine($"[red]OnnxTeacher failed:[/] {Markup.Escape(e.Message)}");
        return 1;
    }
});
return root.Parse(args).Invoke();
