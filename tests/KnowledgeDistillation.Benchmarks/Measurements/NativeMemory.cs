namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// The process's resident memory from /proc/self/status (Linux), which covers libtorch's native allocations that
/// .NET's memory diagnostics do not see. The peak (VmHWM) can be reset by writing 5 to /proc/self/clear_refs.
/// </summary>
internal static class NativeMemory
{
    public static bool Available => File.Exists("/proc/self/status") && File.Exists("/proc/self/clear_refs");

    public static double ResidentMegabytes => Read("VmRSS:");

    public static double PeakMegabytes => Read("VmHWM:");

    /// <summary>Sets the peak to the current resident size.</summary>
    public static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5");

    /// <summary>How far above the memory at the start <paramref name="action"/> took the process (MB).</summary>
    public static double PeakAbove(Action action)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        double before = ResidentMegabytes;
        ResetPeak();
        action();
        return PeakMegabytes - before;
    }

    private static double Read(string field)
    {
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field, StringComparison.Ordinal));
        return long.Parse(line[field.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
    }
}
