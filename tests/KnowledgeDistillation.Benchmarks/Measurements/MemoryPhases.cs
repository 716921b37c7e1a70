using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// Where a step's memory goes, phase by phase, for a Llama-shaped pair (teacher 4 layers, student 2, width 256, 8
/// heads, 4 key-value heads, vocabulary 4096): the peak and the live resident memory above the start after the teacher's
/// forward pass, the student's, the loss and the backward pass, with or without activation checkpointing. A diagnostic
/// for <see cref="Students.MemoryPlan"/>: it shows which phase sets a step's peak.
/// </summary>
internal static class MemoryPhases
{
    /// <summary>With <paramref name="timeOnly"/>, the median time of a full step (teacher, student, loss, backward) over 5 after 2, with glibc's allocator left as it is.</summary>
    public static int Run(bool checkpointing, long batch, long length, bool timeOnly = false)
    {
        if (!timeOnly) NativeMemory.TrackLargeAllocations();
        manual_seed(1);
        var config = new LlamaConfig { VocabSize = 4096, ContextLength = 512, Width = 256, Heads = 8, KeyValueHeads = 4, Layers = 4, FeedForwardWidth = 704 };
        var teacher = new LlamaModel(config);
        var student = new LlamaModel(config with { Layers = 2 }) { ActivationCheckpointing = checkpointing };
        foreach (var p in teacher.parameters()) p.requires_grad_(false);
        DistillationObjective objective = DistillationObjective.Create().SoftTargets(0.5, temperature: 2.0).HardTargets(0.5).Build();
        Tensor ids = randint(0, 4096, [batch, length + 1]);
        var tb = new TokenBatch(ids[.., ..(int)length].contiguous(), ones(batch, length, ScalarType.Int64));
        Tensor labels = ids[.., 1..].contiguous();
        if (timeOnly)
        {
            var times = new List<double>();
            for (int round = 0; round < 7; round++)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                using var scope = NewDisposeScope();
                ModelOutput t;
                using (no_grad()) t = teacher.Run(tb, objective.TeacherRequest);
                ModelOutput s = student.Run(tb, objective.StudentRequest);
                objective.Compute(new KnowledgeDistillation.Objectives.DistillationContext([t], s, labels, tb.AttentionMask, 0)).Total.backward();
                foreach (var p in student.parameters()) p.grad = null;
                if (round >= 2) times.Add(clock.Elapsed.TotalMilliseconds);
            }
            Console.WriteLine($"{batch} x {length}, checkpointing {(checkpointing ? "on" : "off")}: median step {times.Order().ElementAt(2):F0} ms");
            return 0;
        }
        for (int round = 0; round < 1; round++)
        {
            GC.Collect();
            double start = NativeMemory.ResidentMegabytes;
            NativeMemory.ResetPeak();
            ModelOutput t;
            using (no_grad()) t = teacher.Run(tb, objective.TeacherRequest);
            double afterTeacher = NativeMemory.PeakMegabytes - start, teacherLive = NativeMemory.ResidentMegabytes - start;
            NativeMemory.ResetPeak();
            ModelOutput s = student.Run(tb, objective.StudentRequest);
            double afterStudent = NativeMemory.PeakMegabytes - start, studentLive = NativeMemory.ResidentMegabytes - start;
            NativeMemory.ResetPeak();
            var result = objective.Compute(new KnowledgeDistillation.Objectives.DistillationContext([t], s, labels, tb.AttentionMask, 0));
            double afterLoss = NativeMemory.PeakMegabytes - start, lossLive = NativeMemory.ResidentMegabytes - start;
            NativeMemory.ResetPeak();
            result.Total.backward();
            double afterBackward = NativeMemory.PeakMegabytes - start;
            Console.WriteLine($"{batch} x {length}, checkpointing {(checkpointing ? "on" : "off")}: teacher peak {afterTeacher:F0} live {teacherLive:F0}; student peak {afterStudent:F0} live {studentLive:F0}; loss peak {afterLoss:F0} live {lossLive:F0}; backward peak {afterBackward:F0}");
            foreach (var p in student.parameters()) p.grad?.Dispose();
            foreach (var p in student.parameters()) p.grad = null;
        }
        return 0;
    }
}
