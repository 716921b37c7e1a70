using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Students;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// Where a step's memory goes, phase by phase, for one of <see cref="MemoryPlanCheck"/>'s configurations: the peak and the
/// live resident memory above the step's start after the teacher's forward pass, the student's, the loss, the backward
/// pass and AdamW's update (second of two rounds, so the moments exist), beside <see cref="MemoryPlan"/>'s terms. A
/// diagnostic for the plan: it shows which phase sets a step's peak and what each holds.
/// </summary>
internal static class MemoryPhases
{
    /// <summary>With <paramref name="timeOnly"/>, the median time of a full step over 5 after 2, with glibc's allocator left as it is.</summary>
    public static int Run(string configuration, bool timeOnly = false)
    {
        if (!timeOnly) NativeMemory.TrackLargeAllocations();
        var c = MemoryPlanCheck.Parse(configuration);
        MemoryPlanCheck.Build(c.Family, out nn.Module teacherModule, out nn.Module studentModule, tiny: false, c.Length);
        if (c.Lora) Lora.Apply(studentModule, new LoraOptions { Targets = [.. LoraTargets.For(studentModule)], Rank = c.Rank, Alpha = 2 * c.Rank });
        ((dynamic)studentModule).ActivationCheckpointing = c.Checkpointing;
        foreach (var p in teacherModule.parameters()) p.requires_grad_(false);
        var teacher = (IModuleModel<TokenBatch>)teacherModule;
        var student = (IModuleModel<TokenBatch>)studentModule;
        MemoryPlan plan = MemoryPlan.Estimate(teacherModule, studentModule, c.Batch, c.Length);
        DistillationObjective objective = DistillationObjective.Create().SoftTargets(0.5, temperature: 2.0).HardTargets(0.5).Build();
        (TokenBatch tb, Tensor labels) = MemoryPlanCheck.Data(c, 1)[0] is var d ? (d.Inputs, d.Labels!) : default;
        var trainable = studentModule.parameters().Where(p => p.requires_grad).ToList();
        using var optimizer = optim.AdamW(trainable, 1e-4);
        var times = new List<double>();
        for (int round = 0; round < (timeOnly ? 7 : 2); round++)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            GC.Collect();
            double start = NativeMemory.ResidentMegabytes;
            NativeMemory.ResetPeak();
            ModelOutput t;
            using (no_grad()) t = teacher.Run(tb, objective.TeacherRequest);
            double teacherPeak = NativeMemory.PeakMegabytes - start, teacherLive = NativeMemory.ResidentMegabytes - start;
            NativeMemory.ResetPeak();
            ModelOutput s = student.Run(tb, objective.StudentRequest);
            double studentPeak = NativeMemory.PeakMegabytes - start, studentLive = NativeMemory.ResidentMegabytes - start;
            NativeMemory.ResetPeak();
            var result = objective.Compute(new DistillationContext([t], s, labels, tb.AttentionMask, 0));
            double lossPeak = NativeMemory.PeakMegabytes - start, lossLive = NativeMemory.ResidentMegabytes - start;
            NativeMemory.ResetPeak();
            result.Total.backward();
            double backwardPeak = NativeMemory.PeakMegabytes - start, backwardLive = NativeMemory.ResidentMegabytes - start;
            NativeMemory.ResetPeak();
            optimizer.step();
            double updatePeak = NativeMemory.PeakMegabytes - start;
            if (timeOnly && round >= 2) times.Add(clock.Elapsed.TotalMilliseconds);
            if (!timeOnly && round == 1)
            {
                Console.WriteLine($"{configuration}: MB above the step's start (weights, gradients and moments already there)");
                Console.WriteLine($"  teacher forward  peak {teacherPeak,6:F0}  live {teacherLive,6:F0}");
                Console.WriteLine($"  student forward  peak {studentPeak,6:F0}  live {studentLive,6:F0}");
                Console.WriteLine($"  loss             peak {lossPeak,6:F0}  live {lossLive,6:F0}");
                Console.WriteLine($"  backward         peak {backwardPeak,6:F0}  live {backwardLive,6:F0}");
                Console.WriteLine($"  update           peak {updatePeak,6:F0}");
                Console.WriteLine($"  plan: {plan}");
            }
        }
        if (timeOnly) Console.WriteLine($"{configuration}: median step {times.Order().ElementAt(times.Count / 2):F0} ms");
        return 0;
    }
}
