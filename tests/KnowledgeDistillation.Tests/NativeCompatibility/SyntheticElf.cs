using System.Text;

namespace KnowledgeDistillation.Tests.NativeCompatibility;

/// <summary>
/// Writes small but well-formed ELF64 shared objects that carry only what symbol versioning needs
/// (.dynstr, .dynsym, .gnu.version, .gnu.version_r, .gnu.version_d, .shstrtab), laid out from the
/// System V gABI and the GNU symbol-versioning spec, independently of the parser under test.
/// </summary>
internal sealed class SyntheticElf
{
    private readonly List<(string File, string Version, ushort Index, ushort Flags)> _needs = [];
    private readonly List<(string Name, ushort Version)> _symbols = [];
    private readonly List<string> _definitions = [];
    private readonly Dictionary<string, long> _flagsOffsets = [];
    private string _soname = "libsynthetic.so";

    /// <summary>Adds a version requirement; <paramref name="index"/> is what symbols use to bind to it.</summary>
    public SyntheticElf Needs(string file, string version, ushort index, ushort flags = 0)
    {
        _needs.Add((file, version, index, flags));
        return this;
    }

    /// <summary>Adds an undefined dynamic symbol bound to a version index (1 = global, unversioned).</summary>
    public SyntheticElf Symbol(string name, ushort versionIndex)
    {
        _symbols.Add((name, versionIndex));
        return this;
    }

    /// <summary>Makes the file define versions, as a libstdc++ does.</summary>
    public SyntheticElf Defines(string soname, params string[] versions)
    {
        _soname = soname;
        _definitions.AddRange(versions);
        return this;
    }

    /// <summary>File offset of the vna_flags field of the requirement named <paramref name="version"/> (after <see cref="Build"/>).</summary>
    public long FlagsOffsetOf(string version) => _flagsOffsets[version];

    public byte[] Build()
    {
        var dynstr = new StringTable();
        var shstrtab = new StringTable();

        // .dynsym: the mandatory null symbol, then each symbol as an undefined global function.
        var dynsym = new Writer();
        dynsym.Zeros(24);
        foreach ((string name, _) in _symbols)
        {
            dynsym.U32(dynstr.Add(name)).U8(0x12).U8(0).U16(0).U64(0).U64(0);
        }

        var versym = new Writer();
        versym.U16(0);
        foreach ((_, ushort version) in _symbols) versym.U16(version);

        // .gnu.version_r: one Elf64_Verneed per needed file, each followed by its Elf64_Vernaux entries.
        var verneed = new Writer();
        var needOffsets = new List<(string Version, long Offset)>();
        var files = _needs.Select(n => n.File).Distinct().ToList();
        for (int f = 0; f < files.Count; f++)
        {
            var auxes = _needs.Where(n => n.File == files[f]).ToList();
            int next = f == files.Count - 1 ? 0 : 16 + 16 * auxes.Count;
            verneed.U16(1).U16((ushort)auxes.Count).U32(dynstr.Add(files[f])).U32(16).U32((uint)next);
            for (int a = 0; a < auxes.Count; a++)
            {
                needOffsets.Add((auxes[a].Version, verneed.Length + 4));
                verneed.U32(ElfHash(auxes[a].Version)).U16(auxes[a].Flags).U16(auxes[a].Index)
                       .U32(dynstr.Add(auxes[a].Version)).U32(a == auxes.Count - 1 ? 0u : 16u);
            }
        }

        // .gnu.version_d: the base entry (the soname), then one Elf64_Verdef + Elf64_Verdaux per version.
        var verdef = new Writer();
        var names = new[] { _soname }.Concat(_definitions).ToList();
        for (int d = 0; _definitions.Count > 0 && d < names.Count; d++)
        {
            verdef.U16(1).U16((ushort)(d == 0 ? 1 : 0)).U16((ushort)(d + 1)).U16(1).U32(ElfHash(names[d]))
                  .U32(20).U32(d == names.Count - 1 ? 0u : 28u);
            verdef.U32(dynstr.Add(names[d])).U32(0);
        }

        var sections = new List<(string Name, uint Type, byte[] Data, uint Link, uint Info, ulong EntSize)>
        {
            (".dynstr", 3, [], 0, 0, 0), // filled below, once every name is in
            (".dynsym", 11, dynsym.ToArray(), 1, 1, 24),
            (".gnu.version", 0x6fffffff, versym.ToArray(), 2, 0, 2),
        };
        if (files.Count > 0) sections.Add((".gnu.version_r", 0x6ffffffe, verneed.ToArray(), 1, (uint)files.Count, 0));
        if (_definitions.Count > 0) sections.Add((".gnu.version_d", 0x6ffffffd, verdef.ToArray(), 1, (uint)names.Count, 0));
        sections[0] = sections[0] with { Data = dynstr.ToArray() };
        foreach (var s in sections) shstrtab.Add(s.Name);
        shstrtab.Add(".shstrtab");
        sections.Add((".shstrtab", 3, shstrtab.ToArray(), 0, 0, 0));

        var file = new Writer();
        file.Zeros(64);
        var offsets = new List<long>();
        foreach (var s in sections)
        {
            file.AlignTo(8);
            offsets.Add(file.Length);
            if (s.Name == ".gnu.version_r")
            {
                foreach ((string version, long offset) in needOffsets) _flagsOffsets[version] = file.Length + offset;
            }
            file.Bytes(s.Data);
        }

        file.AlignTo(8);
        long sectionHeaders = file.Length;
        file.Zeros(64); // section 0
        for (int i = 0; i < sections.Count; i++)
        {
            var s = sections[i];
            file.U32(shstrtab.Offset(s.Name)).U32(s.Type).U64(2).U64((ulong)offsets[i]).U64((ulong)offsets[i])
                .U64((ulong)s.Data.Length).U32(s.Link).U32(s.Info).U64(8).U64(s.EntSize);
        }

        byte[] bytes = file.ToArray();
        byte[] ident = [0x7f, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1, 0];
        ident.CopyTo(bytes, 0);
        Put(bytes, 0x10, 3, 2);                       // e_type = ET_DYN
        Put(bytes, 0x12, 62, 2);                      // e_machine = EM_X86_64
        Put(bytes, 0x14, 1, 4);                       // e_version
        Put(bytes, 0x28, (ulong)sectionHeaders, 8);   // e_shoff
        Put(bytes, 0x34, 64, 2);                      // e_ehsize
        Put(bytes, 0x3A, 64, 2);                      // e_shentsize
        Put(bytes, 0x3C, (ulong)sections.Count + 1, 2); // e_shnum
        Put(bytes, 0x3E, (ulong)sections.Count, 2);   // e_shstrndx (the last one)
        return bytes;
    }

    private static void Put(byte[] bytes, int at, ulong value, int size)
    {
        for (int i = 0; i < size; i++) bytes[at + i] = (byte)(value >> (8 * i));
    }

    /// <summary>The SysV ELF hash that vna_hash / vd_hash carry.</summary>
    private static uint ElfHash(string name)
    {
        uint h = 0;
        foreach (byte c in Encoding.ASCII.GetBytes(name))
        {
            h = (h << 4) + c;
            uint g = h & 0xf0000000;
            if (g != 0) h ^= g >> 24;
            h &= ~g;
        }
        return h;
    }

    private sealed class StringTable
    {
        private readonly Writer _data = new();
        private readonly Dictionary<string, uint> _offsets = [];

        public StringTable() => _data.U8(0);

        public uint Add(string value)
        {
            if (_offsets.TryGetValue(value, out uint existing)) return existing;
            uint offset = (uint)_data.Length;
            _data.Bytes(Encoding.ASCII.GetBytes(value)).U8(0);
            _offsets[value] = offset;
            return offset;
        }

        public uint Offset(string value) => _offsets[value];

        public byte[] ToArray() => _data.ToArray();
    }

    private sealed class Writer
    {
        private readonly MemoryStream _stream = new();

        public long Length => _stream.Length;

        public Writer U8(byte value)
        {
            _stream.WriteByte(value);
            return this;
        }

        public Writer U16(ushort value) => Little(value, 2);

        public Writer U32(uint value) => Little(value, 4);

        public Writer U64(ulong value) => Little(value, 8);

        public Writer Zeros(int count) => Bytes(new byte[count]);

        public Writer Bytes(byte[] data)
        {
            _stream.Write(data);
            return this;
        }

        public Writer AlignTo(int alignment) => Zeros((int)((alignment - _stream.Length % alignment) % alignment));

        public byte[] ToArray() => _stream.ToArray();

        private Writer Little(ulong value, int size)
        {
            for (int i = 0; i < size; i++) _stream.WriteByte((byte)(value >> (8 * i)));
            return this;
        }
    }
}
