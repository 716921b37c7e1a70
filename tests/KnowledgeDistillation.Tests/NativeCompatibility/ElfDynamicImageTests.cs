using KnowledgeDistillation.Build;

namespace KnowledgeDistillation.Tests.NativeCompatibility;

public class ElfDynamicImageTests
{
    [Fact]
    public void Reads_requirements_symbols_and_bindings_as_written()
    {
        var elf = ElfSamples.LibTorchSharpLike();
        byte[] bytes = elf.Build();

        ElfDynamicImage image = ElfDynamicImage.Parse(bytes, "synthetic");

        image.Requirements.Select(r => (r.File, r.Version, r.Index)).Should().Equal(
            ("libc.so.6", "GLIBC_2.2.5", (ushort)2),
            ("libstdc++.so.6", "GLIBCXX_3.4.30", (ushort)3),
            ("libstdc++.so.6", ElfSamples.Glibcxx32, (ushort)4),
            ("libstdc++.so.6", "CXXABI_1.3.13", (ushort)5));
        image.Requirements.Should().OnlyContain(r => !r.IsWeak);
        var glibcxx32 = image.Requirements.Single(r => r.Version == ElfSamples.Glibcxx32);
        glibcxx32.FlagsOffset.Should().Be(elf.FlagsOffsetOf(ElfSamples.Glibcxx32));
        image.SymbolsBoundTo(glibcxx32).Should().Equal(LibStdCxxMarkerPatch.MarkerSymbol);
        image.DefinedVersions.Should().BeEmpty();
    }

    [Fact]
    public void Reads_defined_versions_without_the_base_entry()
    {
        ElfDynamicImage image = ElfDynamicImage.Parse(ElfSamples.HostLibStdCxx(ElfSamples.Gcc12Versions), "host");

        image.DefinedVersions.Should().Equal(ElfSamples.Gcc12Versions);
    }

    [Fact]
    public void Rejects_a_file_that_is_not_elf_naming_it()
    {
        byte[] text = System.Text.Encoding.ASCII.GetBytes(new string('x', 200));

        Action parse = () => ElfDynamicImage.Parse(text, "notes.txt");

        parse.Should().Throw<InvalidDataException>().WithMessage("notes.txt*magic*");
    }

    [Fact]
    public void Rejects_a_32_bit_file()
    {
        byte[] bytes = ElfSamples.LibTorchSharpLike().Build();
        bytes[4] = 1;

        Action parse = () => ElfDynamicImage.Parse(bytes, "lib32.so");

        parse.Should().Throw<InvalidDataException>().WithMessage("*64-bit*EI_CLASS = 1*");
    }

    [Theory]
    [InlineData(10)]
    [InlineData(64)]
    [InlineData(300)]
    public void Rejects_a_truncated_file(int keep)
    {
        byte[] whole = ElfSamples.LibTorchSharpLike().Build();
        byte[] cut = whole[..keep];

        Action parse = () => ElfDynamicImage.Parse(cut, "cut.so");

        parse.Should().Throw<InvalidDataException>().WithMessage("cut.so is not a usable ELF shared object*");
    }

    [Fact]
    public void Rejects_a_version_entry_that_points_outside_its_section()
    {
        var elf = ElfSamples.LibTorchSharpLike();
        byte[] bytes = elf.Build();
        // vn_aux of the libstdc++ entry sits 4 bytes before its first vernaux's hash; point it far away.
        long firstAux = elf.FlagsOffsetOf("GLIBCXX_3.4.30") - 4;
        long vnAux = firstAux - 16 + 8;
        BitConverter.GetBytes(0x10000u).CopyTo(bytes, vnAux);

        Action parse = () => ElfDynamicImage.Parse(bytes, "crafted.so");

        parse.Should().Throw<InvalidDataException>().WithMessage("*Elf64_Vernaux*outside its section*");
    }
}
