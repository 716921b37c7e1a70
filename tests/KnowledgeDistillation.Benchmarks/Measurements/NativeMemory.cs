namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// The process's resident memory from /proc/self/status (Linux), which covers libtorch's native allocations that
/// .NET's memory diagnostics do not see. The peak (VmHWM) can be reset by writing 5 to /proc/self/clear_refs.
/// </summary>
internal static partial class NativeMemory
{
    private const int MallocMmapThreshold = -3, MallocArenaMax = -8;

    public static bool Available => File.Exists("/proc/self/status") && File.Exists("/proc/self/clear_refs");

    /// <summary>Whether <paramref name="measurement"/> can run here; says why not when it cannot.</summary>
    public static bool CanMeasure(string measurement)
    {
        if (Available) return true;
        Console.Error.WriteLine($"{measurement} reads /proc/self (Linux only).");
        return false;
    }

    /// <summary>
    /// Makes resident memory track large allocations: glibc otherwise keeps freed blocks below its (growing) mmap
    /// threshold in the heap, so the memory one measurement freed is silently reused by the next and never shows.
    /// From here on every block of 1 MB or more is its own mapping, returned to the system when freed.
    /// </summary>
    public static void TrackLargeAllocations()
    {
        if (OperatingSystem.IsLinux()) mallopt(MallocMmapThreshold, 1 << 20);
    }

    /// <summary>One malloc arena for all threads, so that <see cref="LiveMegabytes"/> sees every allocation.</summary>
    public static void SingleArena()
    {
        if (OperatingSystem.IsLinux()) mallopt(MallocArenaMax, 1);
    }

    /// <summary>Bytes currently allocated through malloc (heap blocks in use + mmapped blocks), from glibc's mallinfo2.</summary>
    public static double LiveMegabytes
    {
        get
        {
            MallInfo2 info = mallinfo2();
            return (double)(info.InUse + info.Mapped) / (1 << 20);
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int mallopt(int parameter, int value);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo2 mallinfo2();

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdinaryBlocks, SmallBlocks, MappedBlocks, Mapped, MaxTotal, FastBytes, InUse, Free, Releasable;
    }

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
