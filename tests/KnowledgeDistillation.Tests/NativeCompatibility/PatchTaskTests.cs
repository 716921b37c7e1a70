using KnowledgeDistillation.Build;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace KnowledgeDistillation.Tests.NativeCompatibility;

public class PatchTaskTests
{
    [Fact]
    public void Patches_every_listed_copy_on_a_host_without_the_version_and_says_so()
    {
        using var folder = new TemporaryFolder();
        string host = folder.Write("host/libstdc++.so.6", ElfSamples.HostLibStdCxx(ElfSamples.Gcc12Versions));
        string first = folder.Write("bin/runtimes/linux-x64/native/libLibTorchSharp.so", ElfSamples.LibTorchSharpLike().Build());
        string second = folder.Write("bin/cpu/libLibTorchSharp.so", ElfSamples.LibTorchSharpLike().Build());
        var engine = new RecordingBuildEngine();
        var task = new PatchLibTorchSharpForLibStdCxx { BuildEngine = engine, HostLibStdCxx = host, Libraries = [new TaskItem(first), new TaskItem(second)] };

        task.Execute().Should().BeTrue();

        engine.Errors.Should().BeEmpty();
        task.PatchedLibraries.Select(i => i.ItemSpec).Should().Equal(first, second);
        foreach (string path in new[] { first, second })
        {
            ElfDynamicImage.Parse(File.ReadAllBytes(path), path).Requirements.Single(r => r.Version == ElfSamples.Glibcxx32).IsWeak.Should().BeTrue();
        }
        engine.Messages.Should().Contain(m => m.Importance == MessageImportance.High && m.Message!.Contains(first) && m.Message.Contains(host));
    }

    [Fact]
    public void Leaves_the_files_alone_on_a_host_with_the_version()
    {
        using var folder = new TemporaryFolder();
        string host = folder.Write("libstdc++.so.6", ElfSamples.HostLibStdCxx(ElfSamples.Gcc13Versions));
        byte[] original = ElfSamples.LibTorchSharpLike().Build();
        string library = folder.Write("bin/libLibTorchSharp.so", original);
        DateTime written = File.GetLastWriteTimeUtc(library);
        var task = new PatchLibTorchSharpForLibStdCxx { BuildEngine = new RecordingBuildEngine(), HostLibStdCxx = host, Libraries = [new TaskItem(library)] };

        task.Execute().Should().BeTrue();

        task.PatchedLibraries.Should().BeEmpty();
        File.ReadAllBytes(library).Should().Equal(original);
        File.GetLastWriteTimeUtc(library).Should().Be(written);
    }

    [Fact]
    public void Fails_the_build_naming_the_file_and_symbol_when_the_patch_is_unsafe()
    {
        using var folder = new TemporaryFolder();
        string host = folder.Write("libstdc++.so.6", ElfSamples.HostLibStdCxx(ElfSamples.Gcc12Versions));
        byte[] original = ElfSamples.LibTorchSharpLike().Symbol("_ZNSt3chrono9tzdb_list5beginEv", 4).Build();
        string library = folder.Write("bin/libLibTorchSharp.so", original);
        var engine = new RecordingBuildEngine();
        var task = new PatchLibTorchSharpForLibStdCxx { BuildEngine = engine, HostLibStdCxx = host, Libraries = [new TaskItem(library)] };

        task.Execute().Should().BeFalse();

        engine.Errors.Should().ContainSingle().Which.Message.Should()
            .Contain(library).And.Contain("_ZNSt3chrono9tzdb_list5beginEv").And.Contain("refuses");
        File.ReadAllBytes(library).Should().Equal(original);
    }

    [Fact]
    public void Fails_the_build_when_the_host_libstdcxx_is_unreadable()
    {
        using var folder = new TemporaryFolder();
        string host = folder.Write("libstdc++.so.6", [1, 2, 3]);
        string library = folder.Write("bin/libLibTorchSharp.so", ElfSamples.LibTorchSharpLike().Build());
        var engine = new RecordingBuildEngine();
        var task = new PatchLibTorchSharpForLibStdCxx { BuildEngine = engine, HostLibStdCxx = host, Libraries = [new TaskItem(library)] };

        task.Execute().Should().BeFalse();

        engine.Errors.Should().ContainSingle().Which.Message.Should().Contain(host).And.Contain("ELF");
    }
}
