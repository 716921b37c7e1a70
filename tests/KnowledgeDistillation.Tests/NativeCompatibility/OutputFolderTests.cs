using KnowledgeDistillation.Build;

namespace KnowledgeDistillation.Tests.NativeCompatibility;

/// <summary>What the build did to this very test project's output folder, compared with the package cache.</summary>
public class OutputFolderTests
{
    private static ElfVersionRequirement Glibcxx32Of(string path) =>
        ElfDynamicImage.Parse(File.ReadAllBytes(path), path).Requirements.Single(r => r.Version == ElfSamples.Glibcxx32);

    [Fact]
    public void The_package_cache_copy_is_never_modified()
    {
        Glibcxx32Of(TorchSharpPackage.LibTorchSharpInPackageCache).IsWeak.Should().BeFalse();
    }

    [Fact]
    public void The_output_copy_is_patched_exactly_when_the_host_libstdcxx_lacks_the_version()
    {
        string host = LibStdCxxMarkerPatch.FindHostLibStdCxx() ?? throw new InvalidOperationException("No libstdc++.so.6 on this host.");
        bool hostHasVersion = LibStdCxxMarkerPatch.DefinedVersions(host).Contains(ElfSamples.Glibcxx32);
        byte[] cached = File.ReadAllBytes(TorchSharpPackage.LibTorchSharpInPackageCache);
        byte[] output = File.ReadAllBytes(TorchSharpPackage.LibTorchSharpInOutput);

        if (hostHasVersion)
        {
            output.Should().Equal(cached, "{0} defines {1}, so nothing may be touched", host, ElfSamples.Glibcxx32);
        }
        else
        {
            Glibcxx32Of(TorchSharpPackage.LibTorchSharpInOutput).IsWeak.Should().BeTrue();
            ElfSamples.Differences(cached, output).Should().HaveCount(1, "only the weak bit of one vna_flags differs");
        }
    }

    [Fact]
    public void The_host_libstdcxx_is_the_one_this_process_loaded()
    {
        string? host = LibStdCxxMarkerPatch.FindHostLibStdCxx();

        host.Should().NotBeNull().And.Contain("/libstdc++.so.6");
        File.ReadAllLines("/proc/self/maps").Should().Contain(line => line.EndsWith(host!, StringComparison.Ordinal));
        LibStdCxxMarkerPatch.DefinedVersions(host!).Should().Contain("GLIBCXX_3.4");
    }
}
