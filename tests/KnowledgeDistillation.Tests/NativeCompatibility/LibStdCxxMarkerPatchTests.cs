using KnowledgeDistillation.Build;

namespace KnowledgeDistillation.Tests.NativeCompatibility;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class LibStdCxxMarkerPatchTests
{
    private static readonly HashSet<string> Gcc12Host = [.. ElfSamples.Gcc12Versions];
    private static readonly HashSet<string> Gcc13Host = [.. ElfSamples.Gcc13Versions];

    [Fact]
    public void Sets_the_weak_flag_of_that_one_entry_and_changes_nothing_else()
    {
        var elf = ElfSamples.LibTorchSharpLike();
        byte[] original = elf.Build();
        byte[] image = (byte[])original.Clone();

        LibStdCxxPatchOutcome outcome = LibStdCxxMarkerPatch.Apply(image, "lib.so", Gcc12Host);

        outcome.Should().Be(LibStdCxxPatchOutcome.Patched);
        long flags = elf.FlagsOffsetOf(ElfSamples.Glibcxx32);
        ElfSamples.Differences(original, image).Should().Equal((int)flags);
        image[flags].Should().Be(0x02, "VER_FLG_WEAK is 0x2 in the low byte of vna_flags");
        image[flags + 1].Should().Be(0x00);
        ElfDynamicImage.Parse(image, "lib.so").Requirements.Where(r => r.IsWeak).Select(r => r.Version)
            .Should().Equal(ElfSamples.Glibcxx32);
    }

    [Fact]
    public void Keeps_flags_already_set_on_the_entry()
    {
        const ushort verFlagInfo = 0x4;
        var elf = ElfSamples.LibTorchSharpLike(glibcxx32Flags: verFlagInfo);
        byte[] image = elf.Build();

        LibStdCxxMarkerPatch.Apply(image, "lib.so", Gcc12Host).Should().Be(LibStdCxxPatchOutcome.Patched);

        image[elf.FlagsOffsetOf(ElfSamples.Glibcxx32)].Should().Be(0x06);
    }

    [Fact]
    public void Applying_twice_is_a_no_op()
    {
        byte[] image = ElfSamples.LibTorchSharpLike().Build();
        LibStdCxxMarkerPatch.Apply(image, "lib.so", Gcc12Host);
        byte[] once = (byte[])image.Clone();

        LibStdCxxPatchOutcome second = LibStdCxxMarkerPatch.Apply(image, "lib.so", Gcc12Host);

        second.Should().Be(LibStdCxxPatchOutcome.AlreadyWeak);
        image.Should().Equal(once);
    }

    [Fact]
    public void Refuses_a_file_with_another_symbol_bound_to_the_version_and_leaves_it_unchanged()
    {
        byte[] image = ElfSamples.LibTorchSharpLike()
            .Symbol("_ZNSt8__format5__tzdbEv", 4) // a real GCC 13 function would be missing at run time
            .Build();
        byte[] original = (byte[])image.Clone();

        Action apply = () => LibStdCxxMarkerPatch.Apply(image, "libLibTorchSharp.so", Gcc12Host);

        apply.Should().Throw<InvalidOperationException>()
            .WithMessage("libLibTorchSharp.so binds 1 symbol(s) other than _ZSt21ios_base_library_initv to GLIBCXX_3.4.32 (_ZNSt8__format5__tzdbEv)*");
        image.Should().Equal(original);
    }

    [Fact]
    public void Refuses_when_the_host_also_lacks_another_needed_version()
    {
        byte[] image = ElfSamples.LibTorchSharpLike().Needs("libstdc++.so.6", "GLIBCXX_3.4.31", index: 6).Build();
        byte[] original = (byte[])image.Clone();

        Action apply = () => LibStdCxxMarkerPatch.Apply(image, "lib.so", Gcc12Host);

        apply.Should().Throw<InvalidOperationException>().WithMessage("lib.so also needs GLIBCXX_3.4.31 from libstdc++.so.6*");
        image.Should().Equal(original);
    }

    [Fact]
    public void Touches_nothing_when_the_host_defines_the_version()
    {
        byte[] image = ElfSamples.LibTorchSharpLike().Build();
        byte[] original = (byte[])image.Clone();

        LibStdCxxMarkerPatch.Apply(image, "lib.so", Gcc13Host).Should().Be(LibStdCxxPatchOutcome.HostProvidesVersion);

        image.Should().Equal(original);
    }

    [Fact]
    public void Touches_nothing_in_a_file_that_does_not_need_the_version()
    {
        byte[] image = new SyntheticElf()
            .Needs("libstdc++.so.6", "GLIBCXX_3.4.30", index: 2)
            .Symbol("_ZNSt8ios_base4InitC1Ev", 2)
            .Build();
        byte[] original = (byte[])image.Clone();

        LibStdCxxMarkerPatch.Apply(image, "old.so", Gcc12Host).Should().Be(LibStdCxxPatchOutcome.NotRequired);

        image.Should().Equal(original);
    }

    [Fact]
    public void Patches_TorchSharps_own_library_at_the_offset_readelf_reports()
    {
        // readelf -V on TorchSharp 0.107.0's libLibTorchSharp.so lists .gnu.version_r at file offset 0x3f8f0 and,
        // at 0x140 inside it, "Name: GLIBCXX_3.4.32  Flags: none  Version: 18"; vna_flags is 4 bytes into that entry.
        const int expectedFlagsOffset = 0x3f8f0 + 0x140 + 4;
        byte[] original = File.ReadAllBytes(TorchSharpPackage.LibTorchSharpInPackageCache);
        byte[] image = (byte[])original.Clone();

        // No host versions: the real file needs a dozen older ones the synthetic host list leaves out.
        LibStdCxxMarkerPatch.Apply(image, "libLibTorchSharp.so", hostVersions: null).Should().Be(LibStdCxxPatchOutcome.Patched);

        ElfSamples.Differences(original, image).Should().Equal(expectedFlagsOffset);
        image[expectedFlagsOffset].Should().Be(0x02);
    }

    [Fact]
    public void Writes_through_a_new_file_so_a_hard_link_into_a_cache_keeps_its_contents()
    {
        using var folder = new TemporaryFolder();
        string cached = folder.Write("cache/libLibTorchSharp.so", ElfSamples.LibTorchSharpLike().Build());
        byte[] cachedBytes = File.ReadAllBytes(cached);
        string output = folder.PathOf("bin/libLibTorchSharp.so");
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        Posix.HardLink(cached, output);

        LibStdCxxMarkerPatch.ApplyToFile(output, Gcc12Host).Should().Be(LibStdCxxPatchOutcome.Patched);

        File.ReadAllBytes(cached).Should().Equal(cachedBytes);
        ElfDynamicImage.Parse(File.ReadAllBytes(output), output).Requirements.Single(r => r.Version == ElfSamples.Glibcxx32).IsWeak.Should().BeTrue();
    }

    [Fact]
    public void Replaces_a_symbolic_link_instead_of_following_it()
    {
        using var folder = new TemporaryFolder();
        string cached = folder.Write("cache/libLibTorchSharp.so", ElfSamples.LibTorchSharpLike().Build());
        byte[] cachedBytes = File.ReadAllBytes(cached);
        string output = folder.PathOf("libLibTorchSharp.so");
        File.CreateSymbolicLink(output, cached);

        LibStdCxxMarkerPatch.ApplyToFile(output, Gcc12Host).Should().Be(LibStdCxxPatchOutcome.Patched);

        File.ReadAllBytes(cached).Should().Equal(cachedBytes);
        new FileInfo(output).LinkTarget.Should().BeNull();
    }

    [Fact]
    public void Keeps_the_file_mode_and_date_and_leaves_no_temporary_files()
    {
        using var folder = new TemporaryFolder();
        string output = folder.Write("libLibTorchSharp.so", ElfSamples.LibTorchSharpLike().Build());
        const UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead;
        File.SetUnixFileMode(output, mode);
        DateTime written = new(2026, 5, 7, 12, 0, 0, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(output, written);

        LibStdCxxMarkerPatch.ApplyToFile(output, Gcc12Host).Should().Be(LibStdCxxPatchOutcome.Patched);

        File.GetUnixFileMode(output).Should().Be(mode);
        File.GetLastWriteTimeUtc(output).Should().Be(written, "an unchanged date keeps MSBuild from copying the original back");
        Directory.GetFiles(folder.Path).Should().Equal(output);
    }
}
