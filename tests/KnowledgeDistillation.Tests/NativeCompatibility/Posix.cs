using System.ComponentModel;
using System.Runtime.InteropServices;

namespace KnowledgeDistillation.Tests.NativeCompatibility;

/// <summary>The one POSIX call .NET has no API for.</summary>
internal static partial class Posix
{
    public static void HardLink(string existing, string link)
    {
        if (NativeLink(existing, link) != 0) throw new Win32Exception(Marshal.GetLastPInvokeError(), $"link({existing}, {link}) failed");
    }

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NativeLink(string existing, string link);
}
