using System.Diagnostics;
using System.Globalization;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Students;

/// <summary>Median forward latency of teacher and student on the same batch.</summary>
/// <param name="TeacherMilliseconds">The teacher's median.</param>
/// <param name="StudentMilliseconds">The student's median.</param>
/// <param name="Runs">Timed runs per model (after warm-up).</param>
public sealed record LatencyComparison(double TeacherMilliseconds, double StudentMilliseconds, int Runs)
{
    /// <summary>Teacher latency / student latency.</summary>
    public double SpeedUp => TeacherMilliseconds / StudentMilliseconds;
}

/// <summary>
/// Teacher vs student: parameters, bytes of saved weights in float32 and bfloat16, the ratio and the share
/// saved, and optionally measured forward latency — the figures DistilBERT and TinyBERT are known by
/// (440 MB → 268 MB, 440 MB → 62 MB). <see cref="ToString"/> prints it as a table.
/// </summary>
public sealed record CompressionReport(ModelSize Teacher, ModelSize Student, LatencyComparison? Latency)
{
    /// <summary>Student parameters / teacher parameters.</summary>
    public double ParameterRatio => (double)Student.Parameters / Teacher.Parameters;

    /// <summary>Share of the teacher's weight bytes the student saves, 0 … 1.</summary>
    public double FractionSaved => 1 - (double)Student.Float32Bytes / Teacher.Float32Bytes;

    /// <summary>Compares sizes, and latency when <paramref name="forward"/> is given.</summary>
    /// <param name="teacher">The teacher.</param>
    /// <param name="student">The student.</param>
    /// <param name="forward">Runs one forward pass of the given model on a fixed batch (timed in eval mode, without gradients).</param>
    /// <param name="runs">Timed runs per model; the median is reported.</param>
    /// <param name="warmup">Untimed runs first.</param>
    public static CompressionReport Compare(nn.Module teacher, nn.Module student, Action<nn.Module>? forward = null, int runs = 7, int warmup = 2)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(student);
        if (runs < 1) throw new ArgumentOutOfRangeException(nameof(runs), runs, "runs must be at least 1.");
        if (warmup < 0) throw new ArgumentOutOfRangeException(nameof(warmup), warmup, "warmup cannot be negative.");
        LatencyComparison? latency = forward is null ? null : new LatencyComparison(Median(teacher, forward, runs, warmup), Median(student, forward, runs, warmup), runs);
        return new CompressionReport(ModelSize.Of(teacher), ModelSize.Of(student), latency);
    }

    /// <summary>The comparison as an aligned text table.</summary>
    public override string ToString()
    {
        var rows = new List<string[]>
        {
            new[] { "", "teacher", "student", "student / teacher" },
            new[] { "parameters", Count(Teacher.Parameters), Count(Student.Parameters), $"{Percent(ParameterRatio)} ({Percent(1 - ParameterRatio)} fewer)" },
            new[] { "weights, float32", Bytes(Teacher.Float32Bytes), Bytes(Student.Float32Bytes), $"{Percent(1 - FractionSaved)} ({Percent(FractionSaved)} saved)" },
            new[] { "weights, bfloat16", Bytes(Teacher.BFloat16Bytes), Bytes(Student.BFloat16Bytes), "" },
        };
        if (Latency is not null)
        {
            rows.Add(["forward, median", Milliseconds(Latency.TeacherMilliseconds), Milliseconds(Latency.StudentMilliseconds),
                $"{Latency.SpeedUp.ToString("0.00", CultureInfo.InvariantCulture)}x faster ({Latency.Runs} runs)"]);
        }
        int[] widths = Enumerable.Range(0, 4).Select(c => rows.Max(r => r[c].Length)).ToArray();
        var text = new StringBuilder();
        foreach (string[] row in rows)
        {
            string line = $"{row[0].PadRight(widths[0])}  {row[1].PadLeft(widths[1])}  {row[2].PadLeft(widths[2])}  {row[3]}";
            text.AppendLine(line.TrimEnd());
        }
        return text.ToString();
    }

    private static double Median(nn.Module model, Action<nn.Module> forward, int runs, int warmup)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            var times = new double[runs];
            for (int i = 0; i < warmup + runs; i++)
            {
                using var scope = NewDisposeScope();
                long start = Stopwatch.GetTimestamp();
                forward(model);
                if (i >= warmup) times[i - warmup] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
            Array.Sort(times);
            return runs % 2 == 1 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    private static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    private static string Bytes(long bytes) => bytes >= 1_000_000
        ? (bytes / 1e6).ToString("0.0", CultureInfo.InvariantCulture) + " MB"
        : (bytes / 1e3).ToString("0.0", CultureInfo.InvariantCulture) + " kB";

    private static string Percent(double fraction) => (100 * fraction).ToString("0.0", CultureInfo.InvariantCulture) + "%";

    private static string Milliseconds(double ms) => ms.ToString("0.00", CultureInfo.InvariantCulture) + " ms";
}
