using System.Runtime.InteropServices;

namespace KnowledgeDistillation.Training;

/// <summary>
/// The flushes a database's write path makes before it calls a write done: file contents first, then the folder
/// that names them, so that after a power loss a renamed checkpoint folder holds every byte its manifest promises.
/// </summary>
internal static partial class Durability
{
    /// <summary>Forces a written file's data to the storage device (fsync).</summary>
    public static void FlushFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Forces a folder's entries (created, renamed or deleted names) to the storage device. POSIX only: Windows
    /// cannot open a folder for flushing, and NTFS journals renames itself.
    /// </summary>
    public static void FlushDirectory(string path)
    {
        if (OperatingSystem.IsWindows()) return;
        int descriptor = Open(path, 0 /* O_RDONLY */);
        if (descriptor < 0) throw new IOException($"Could not open the folder {path} to flush it (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Fsync(descriptor) != 0) throw new IOException($"Could not flush the folder {path} to disk (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            _ = Close(descriptor);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int descriptor);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int descriptor);
}
