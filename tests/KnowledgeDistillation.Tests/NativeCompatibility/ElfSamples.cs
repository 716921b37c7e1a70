using KnowledgeDistillation.Build;

namespace KnowledgeDistillation.Tests.NativeCompatibility;

/// <summary>Synthetic stand-ins for libLibTorchSharp.so and for the libstdc++ of a host.</summary>
internal static class ElfSamples
{
    public const string Glibcxx32 = LibStdCxxMarkerPatch.Version;

    /// <summary>Shaped like TorchSharp 0.107's library: needs GLIBCXX_3.4.32 for the iostream marker only.</summary>
    public static SyntheticElf LibTorchSharpLike(ushort glibcxx32Flags = 0) => new SyntheticElf()
        .Needs("libc.so.6", "GLIBC_2.2.5", index: 2)
        .Needs("libstdc++.so.6", "GLIBCXX_3.4.30", index: 3)
        .Needs("libstdc++.so.6", Glibcxx32, index: 4, flags: glibcxx32Flags)
        .Needs("libstdc++.so.6", "CXXABI_1.3.13", index: 5)
        .Symbol("malloc", 2)
        .Symbol("_ZNSt8ios_base4InitC1Ev", 3)
        .Symbol(LibStdCxxMarkerPatch.MarkerSymbol, 4)
        .Symbol("__cxa_throw", 5)
        .Symbol("THSTensor_add", 1);

    /// <summary>The versions Debian 12's libstdc++ (GCC 12) defines at the top of its range.</summary>
    public static readonly string[] Gcc12Versions = ["GLIBCXX_3.4", "GLIBCXX_3.4.29", "GLIBCXX_3.4.30", "CXXABI_1.3", "CXXABI_1.3.13"];

    /// <summary>GCC 13's adds GLIBCXX_3.4.31 and GLIBCXX_3.4.32.</summary>
    public static readonly string[] Gcc13Versions = [.. Gcc12Versions, "GLIBCXX_3.4.31", Glibcxx32];

    public static byte[] HostLibStdCxx(string[] versions) => new SyntheticElf().Defines("libstdc++.so.6", versions).Build();

    /// <summary>Offsets at which two images differ.</summary>
    public static List<int> Differences(byte[] a, byte[] b)
    {
        a.Length.Should().Be(b.Length, "the patch never changes a file's length");
        return Enumerable.Range(0, a.Length).Where(i => a[i] != b[i]).ToList();
    }
}
