using System.Diagnostics;
using System.Globalization;
using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// <see cref="Students.MemoryPlan.Estimate"/> against the measured peak of real steps: each configuration in a fresh process
/// (glibc maps every block of 1 MB or more on its own, so freed memory leaves the resident set), the resident size
/// before the models exist as the baseline, one warm-up step (gradients and AdamW's moments allocated), then the peak
/// resident size over three steps; also the median step time. Configurations: the TinyGpt workload at batch 32 and 64,
/// with activation checkpointing, with LoRA; a Llama-shaped pair at 128 and 512 tokens with and without checkpointing;
/// a BERT classification pair.
/// </summary>
internal static class MemoryPlanCheck
{
    private static readonly string[] Configurations =
    [
        "tiny-gpt/32", "tiny-gpt/64", "tiny-gpt/32/checkpointing", "tiny-gpt/32/lora", "tiny-gpt/32/lora+checkpointing", "tiny-gpt/32/lora16+checkpointing",
        "llama/8x128", "llama/8x128/checkpointing", "llama/8x512", "llama/8x512/checkpointing", "llama/8x512/lora+checkpointing",
        "bert/32x128",
    ];

    public static int Run(string? one)
    {
        if (one is not null) return Measure(one);
        Console.WriteLine("| configuration | estimate MB | measured peak MB | estimate / measured | median step ms |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (string configuration in Configurations)
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (string a in (string[])[typeof(MemoryPlanCheck).Assembly.Location, "measure", "memory-plan", configuration]) start.ArgumentList.Add(a);
            using Process process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            string? line = output.Split('\n').FirstOrDefault(l => l.StartsWith("RESULT ", StringComparison.Ordinal));
            if (line is null)
            {
                Console.WriteLine($"| {configuration} | failed: {output.Trim().Split('\n').LastOrDefault()} | | | |");
                continue;
            }
            string[] p = line.Split(' ');
            double estimate = double.Parse(p[2], CultureInfo.InvariantCulture), measured = double.Parse(p[3], CultureInfo.InvariantCulture);
            Console.WriteLine($"| {configuration} | {estimate:F0} | {measured:F0} | {estimate / measured:F2} | {p[4]} |");
        }
        return 0;
    }

    private static int Measure(string configuration)
    {
        if (!NativeMemory.CanMeasure("memory-plan")) return 1;
        NativeMemory.TrackLargeAllocations();
        Configuration c = Parse(configuration);
        // JIT and libtorch's lazy initialisation first, on a throwaway pair of the same family, so they are in the baseline.
        Build(c.Family, out _, out _, tiny: true);
        Steps(c with { Batch = 2, Length = 8 }, null, null, 2, out _);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        double baseline = NativeMemory.ResidentMegabytes;

        Build(c.Family, out nn.Module teacher, out nn.Module student, tiny: false, c.Length);
        double median = 0;
        double peak = Steps(c, teacher, student, 4, out MemoryPlan plan, s => median = s);
        Console.WriteLine($"RESULT {configuration} {plan.Total / (double)(1 << 20):F1} {peak - baseline:F1} {median:F0}");
        Console.Error.WriteLine(plan);
        return 0;
    }

    /// <summary>A configuration: family/batch[xlength][/lora[rank]][+checkpointing] (TinyGpt's length defaults to its context, 64).</summary>
    internal sealed record Configuration(string Family, long Batch, long Length, bool Checkpointing, bool Lora, int Rank = 8)
    {
        public long Vocabulary => Family == "tiny-gpt" ? Workloads.Vocabulary : Family == "llama" ? 4096 : 8000;
    }

    internal static Configuration Parse(string configuration)
    {
        string[] parts = configuration.Split('/');
        bool checkpointing = parts.Length > 2 && parts[2].Contains("checkpointing"), lora = parts.Length > 2 && parts[2].Contains("lora");
        string[] shape = parts[1].Split('x');
        long batch = long.Parse(shape[0], CultureInfo.InvariantCulture), length = shape.Length > 1 ? long.Parse(shape[1], CultureInfo.InvariantCulture) : Workloads.Context;
        // "lora16": rank 16 on every projection (the TinyGpt sample's student); "lora": rank 8.
        int rank = lora && parts[2].IndexOf("lora", StringComparison.Ordinal) is int at && parts[2][(at + 4)..].TakeWhile(char.IsAsciiDigit).ToArray() is { Length: > 0 } digits
            ? int.Parse(new string(digits), CultureInfo.InvariantCulture) : 8;
        return new Configuration(parts[0], batch, length, checkpointing, lora, rank);
    }

    /// <summary>Random token batches for <paramref name="c"/>: next-token labels, or a class per sequence for BERT.</summary>
    internal static List<DistillationBatch<TokenBatch>> Data(Configuration c, int count)
    {
        manual_seed(3);
        return Enumerable.Range(0, count).Select(_ =>
        {
            Tensor ids = randint(0, c.Vocabulary, [c.Batch, c.Length + 1]);
            Tensor labels = c.Family == "bert" ? randint(0, 2, [c.Batch]) : ids[.., 1..].contiguous();
            return new DistillationBatch<TokenBatch>(new TokenBatch(ids[.., ..(int)c.Length].contiguous(), ones(c.Batch, c.Length, ScalarType.Int64)), labels);
        }).ToList();
    }

    /// <summary>The pair; TinyGpt's position table grows to <paramref name="length"/> beyond its context of 64 (same widths otherwise).</summary>
    internal static void Build(string family, out nn.Module teacher, out nn.Module student, bool tiny, long length = 64)
    {
        manual_seed(1);
        switch (family)
        {
            case "tiny-gpt":
                int context = (int)Math.Max(Workloads.Context, length);
                teacher = new GptModel((tiny ? Workloads.Teacher with { Layers = 1 } : Workloads.Teacher) with { ContextLength = context });
                student = new GptModel((tiny ? Workloads.Student with { Layers = 1 } : Workloads.Student) with { ContextLength = context });
                break;
            case "llama":
                var config = new LlamaConfig { VocabSize = 4096, ContextLength = 512, Width = 256, Heads = 8, KeyValueHeads = 4, Layers = tiny ? 1 : 4, FeedForwardWidth = 704 };
                teacher = new LlamaModel(config);
                student = new LlamaModel(config with { Layers = tiny ? 1 : 2 });
                break;
            default:
                var bert = new BertConfig { VocabSize = 8000, ContextLength = 512, Width = 256, Heads = 4, Layers = tiny ? 1 : 4, FeedForwardWidth = 1024, Dropout = 0, Head = BertHead.SequenceClassification };
                teacher = new BertModel(bert);
                student = new BertModel(bert with { Width = 128, Heads = 2, FeedForwardWidth = 512, Layers = tiny ? 1 : 2 });
                break;
        }
    }

    /// <summary>Runs a warm-up step and then <paramref name="measured"/> steps; returns the peak resident MB over the latter.</summary>
    private static double Steps(Configuration c, nn.Module? teacher, nn.Module? student, int measured, out MemoryPlan plan, Action<double>? median = null)
    {
        if (teacher is null || student is null) Build(c.Family, out teacher, out student, tiny: true);
        if (c.Lora) Lora.Apply(student, new LoraOptions { Targets = [.. LoraTargets.For(student)], Rank = c.Rank, Alpha = 2 * c.Rank });
        ((dynamic)student).ActivationCheckpointing = c.Checkpointing;
        var options = Workloads.Options(1 + measured);
        plan = MemoryPlan.Estimate(teacher, student, c.Batch, c.Length);
        var data = Data(c, 1 + measured);
        DistillationObjective objective = DistillationObjective.Create().SoftTargets(0.5, temperature: 2.0).HardTargets(0.5).Build();
        var trainer = new DistillationTrainer<TokenBatch>((IDistillationModel<TokenBatch>)teacher, (IModuleModel<TokenBatch>)student, objective, options);
        var times = new List<double>();
        var clock = Stopwatch.StartNew();
        bool reset = false;
        trainer.Train(data, callbacks: [new AfterStep(step =>
        {
            if (step > 1) times.Add(clock.Elapsed.TotalMilliseconds);
            if (!reset)
            {
                GC.Collect();
                NativeMemory.ResetPeak();
                reset = true;
            }
            clock.Restart();
        })]);
        median?.Invoke(times.Order().ElementAt(times.Count / 2));
        return NativeMemory.PeakMegabytes;
    }

    private sealed class AfterStep(Action<long> action) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => action(report.Step);
    }
}
