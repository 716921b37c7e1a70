// The libstdc++ compatibility step for TorchSharp's native library (see docs/troubleshooting.md).
//
// This file is compiled twice: by MSBuild's RoslynCodeTaskFactory when a project that imports
// KnowledgeDistillation.targets builds, and by the unit tests, which include it as source. The task
// factory compiles against netstandard2.0, so the code keeps to that API surface (no Span, no
// BinaryPrimitives, no records).
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace KnowledgeDistillation.Build
{
    /// <summary>One entry of an ELF file's version-needed table (.gnu.version_r): "this file needs Version from File".</summary>
    public sealed class ElfVersionRequirement
    {
        internal ElfVersionRequirement(string file, string version, ushort index, ushort flags, long flagsOffset)
        {
            File = file;
            Version = version;
            Index = index;
            Flags = flags;
            FlagsOffset = flagsOffset;
        }

        /// <summary>The library the version is needed from, e.g. <c>libstdc++.so.6</c>.</summary>
        public string File { get; }

        /// <summary>The version name, e.g. <c>GLIBCXX_3.4.32</c>.</summary>
        public string Version { get; }

        /// <summary>The version index that .gnu.version uses to bind symbols to this requirement (vna_other).</summary>
        public ushort Index { get; }

        /// <summary>The vna_flags field.</summary>
        public ushort Flags { get; }

        /// <summary>File offset of the two-byte vna_flags field.</summary>
        public long FlagsOffset { get; }

        /// <summary>True when VER_FLG_WEAK is set: the loader only notes a missing weak version.</summary>
        public bool IsWeak => (Flags & ElfDynamicImage.VerFlagWeak) != 0;
    }

    /// <summary>
    /// The parts of a 64-bit little-endian ELF shared object that symbol versioning uses: dynamic symbols,
    /// their version indices, the versions the file needs and the versions it defines.
    /// Every offset read is bounds-checked, so a truncated or crafted file fails with <see cref="InvalidDataException"/>.
    /// </summary>
    public sealed class ElfDynamicImage
    {
        /// <summary>VER_FLG_WEAK from elf.h.</summary>
        public const ushort VerFlagWeak = 0x2;

        private const uint ShtDynSym = 11;
        private const uint ShtGnuVerDef = 0x6ffffffd;
        private const uint ShtGnuVerNeed = 0x6ffffffe;
        private const uint ShtGnuVerSym = 0x6fffffff;
        private const ushort VerFlagBase = 0x1;

        private readonly byte[] _bytes;
        private readonly string _name;
        private readonly List<string> _symbolNames = new List<string>();
        private readonly List<ushort> _symbolVersions = new List<ushort>();

        private ElfDynamicImage(byte[] bytes, string name)
        {
            _bytes = bytes;
            _name = name;
        }

        /// <summary>What the file needs, in table order.</summary>
        public IReadOnlyList<ElfVersionRequirement> Requirements { get; private set; } = new ElfVersionRequirement[0];

        /// <summary>Version names the file defines (.gnu.version_d), without the base (soname) entry.</summary>
        public IReadOnlyList<string> DefinedVersions { get; private set; } = new string[0];

        /// <summary>Parses <paramref name="bytes"/>; <paramref name="name"/> is only used in error messages.</summary>
        public static ElfDynamicImage Parse(byte[] bytes, string name)
        {
            if (bytes == null) throw new ArgumentNullException(nameof(bytes));
            var image = new ElfDynamicImage(bytes, name ?? "ELF image");
            image.Read();
            return image;
        }

        /// <summary>Names of the dynamic symbols whose version index is the requirement's index.</summary>
        public IReadOnlyList<string> SymbolsBoundTo(ElfVersionRequirement requirement)
        {
            var names = new List<string>();
            for (int i = 0; i < _symbolNames.Count; i++)
            {
                if ((_symbolVersions[i] & 0x7fff) == requirement.Index) names.Add(_symbolNames[i]);
            }
            return names;
        }

        private void Read()
        {
            Require(_bytes.Length >= 64, "it is shorter than an ELF64 header (" + _bytes.Length + " bytes)");
            Require(_bytes[0] == 0x7f && _bytes[1] == (byte)'E' && _bytes[2] == (byte)'L' && _bytes[3] == (byte)'F',
                "it does not start with the ELF magic bytes");
            Require(_bytes[4] == 2, "it is not a 64-bit ELF file (EI_CLASS = " + _bytes[4] + ", expected 2)");
            Require(_bytes[5] == 1, "it is not little-endian (EI_DATA = " + _bytes[5] + ", expected 1)");

            long sectionTable = CheckedOffset(U64(0x28), "e_shoff");
            int entrySize = U16(0x3A);
            long count = U16(0x3C);
            Require(sectionTable != 0, "it has no section headers, so its symbol versions cannot be verified");
            Require(entrySize == 64, "its section header size is " + entrySize + ", expected 64");
            if (count == 0) count = (long)U64(sectionTable + 32); // extended numbering: the count lives in section 0's sh_size
            Require(count <= (_bytes.Length - sectionTable) / 64,
                "its section header table (" + count + " entries at offset " + sectionTable + ") runs past the end of the file");

            var sections = new List<Section>();
            for (long i = 0; i < count; i++)
            {
                long at = sectionTable + i * 64;
                sections.Add(new Section(U32(at + 4), CheckedOffset(U64(at + 24), "sh_offset"), CheckedOffset(U64(at + 32), "sh_size"), U32(at + 40), U32(at + 44)));
            }

            Section? dynsym = sections.FirstOrDefault(s => s.Type == ShtDynSym);
            Section? versym = sections.FirstOrDefault(s => s.Type == ShtGnuVerSym);
            Section? verneed = sections.FirstOrDefault(s => s.Type == ShtGnuVerNeed);
            Section? verdef = sections.FirstOrDefault(s => s.Type == ShtGnuVerDef);

            if (dynsym != null) ReadSymbols(dynsym, versym, sections);
            if (verneed != null) Requirements = ReadRequirements(verneed, sections);
            if (verdef != null) DefinedVersions = ReadDefinitions(verdef, sections);
        }

        private void ReadSymbols(Section dynsym, Section? versym, List<Section> sections)
        {
            Section strings = Linked(dynsym, sections, ".dynsym");
            long symbolCount = dynsym.Size / 24;
            if (versym != null)
            {
                Require(versym.Size / 2 == symbolCount,
                    ".gnu.version has " + (versym.Size / 2) + " entries but .dynsym has " + symbolCount + " symbols");
            }
            for (long i = 0; i < symbolCount; i++)
            {
                _symbolNames.Add(ReadName(strings, U32(dynsym.Offset + i * 24)));
                _symbolVersions.Add(versym == null ? (ushort)1 : U16(versym.Offset + i * 2));
            }
        }

        private List<ElfVersionRequirement> ReadRequirements(Section verneed, List<Section> sections)
        {
            Section strings = Linked(verneed, sections, ".gnu.version_r");
            var result = new List<ElfVersionRequirement>();
            long entry = verneed.Offset;
            long budget = verneed.Size / 16; // every entry is 16 bytes, so more than this means a cycle
            for (uint i = 0; i < verneed.Info; i++)
            {
                RequireInside(verneed, entry, 16, "Elf64_Verneed");
                ushort auxCount = U16(entry + 2);
                string file = ReadName(strings, U32(entry + 4));
                long aux = entry + U32(entry + 8);
                for (int j = 0; j < auxCount; j++)
                {
                    Require(budget-- > 0, ".gnu.version_r links more entries than the section can hold");
                    RequireInside(verneed, aux, 16, "Elf64_Vernaux");
                    result.Add(new ElfVersionRequirement(file, ReadName(strings, U32(aux + 8)), U16(aux + 6), U16(aux + 4), aux + 4));
                    aux += U32(aux + 12);
                }
                entry += U32(entry + 12);
            }
            return result;
        }

        private List<string> ReadDefinitions(Section verdef, List<Section> sections)
        {
            Section strings = Linked(verdef, sections, ".gnu.version_d");
            var result = new List<string>();
            long entry = verdef.Offset;
            for (uint i = 0; i < verdef.Info; i++)
            {
                RequireInside(verdef, entry, 20, "Elf64_Verdef");
                ushort flags = U16(entry + 2);
                long aux = entry + U32(entry + 12);
                RequireInside(verdef, aux, 8, "Elf64_Verdaux");
                if ((flags & VerFlagBase) == 0) result.Add(ReadName(strings, U32(aux)));
                entry += U32(entry + 16);
            }
            return result;
        }

        private Section Linked(Section section, List<Section> sections, string what)
        {
            Require(section.Link < sections.Count, what + " links string table " + section.Link + " but there are " + sections.Count + " sections");
            return sections[(int)section.Link];
        }

        private string ReadName(Section table, uint offset)
        {
            long start = table.Offset + offset;
            Require(offset < table.Size, "a name offset (" + offset + ") lies outside its string table (" + table.Size + " bytes)");
            long end = start;
            long limit = table.Offset + table.Size;
            while (end < limit && _bytes[end] != 0) end++;
            Require(end < limit, "a name at string-table offset " + offset + " is not terminated");
            return Encoding.ASCII.GetString(_bytes, (int)start, (int)(end - start));
        }

        private void RequireInside(Section section, long at, int size, string what)
        {
            Require(at >= section.Offset && at + size <= section.Offset + section.Size,
                "an " + what + " entry at offset " + at + " lies outside its section");
        }

        private long CheckedOffset(ulong value, string field)
        {
            Require(value <= (ulong)_bytes.Length, field + " (" + value + ") points past the end of the file (" + _bytes.Length + " bytes)");
            return (long)value;
        }

        private ushort U16(long at)
        {
            Require(at >= 0 && at + 2 <= _bytes.Length, "a read at offset " + at + " runs past the end of the file");
            return (ushort)(_bytes[at] | _bytes[at + 1] << 8);
        }

        private uint U32(long at) => U16(at) | (uint)U16(at + 2) << 16;

        private ulong U64(long at) => U32(at) | (ulong)U32(at + 4) << 32;

        private void Require(bool condition, string problem)
        {
            if (!condition) throw new InvalidDataException(_name + " is not a usable ELF shared object: " + problem + ".");
        }

        private sealed class Section
        {
            public Section(uint type, long offset, long size, uint link, uint info)
            {
                Type = type;
                Offset = offset;
                Size = size;
                Link = link;
                Info = info;
            }

            public uint Type { get; }
            public long Offset { get; }
            public long Size { get; }
            public uint Link { get; }
            public uint Info { get; }
        }
    }

    /// <summary>What <see cref="LibStdCxxMarkerPatch"/> did to a file.</summary>
    public enum LibStdCxxPatchOutcome
    {
        /// <summary>The file does not need GLIBCXX_3.4.32: nothing to do.</summary>
        NotRequired,

        /// <summary>The host's libstdc++ defines GLIBCXX_3.4.32: the file loads as shipped and was not touched.</summary>
        HostProvidesVersion,

        /// <summary>The requirement was already weak (an earlier build patched this copy).</summary>
        AlreadyWeak,

        /// <summary>The requirement was marked weak.</summary>
        Patched,
    }

    /// <summary>
    /// Marks libLibTorchSharp.so's need for GLIBCXX_3.4.32 weak so that glibc's loader accepts it on hosts whose
    /// libstdc++ stops at GLIBCXX_3.4.30 (Debian 12, Ubuntu 22.04). That is safe only because the single symbol
    /// bound to the version is GCC 13's iostream initialisation marker, which no relocation uses; anything else
    /// bound to it would be a real missing function, so the patch refuses.
    /// </summary>
    public static class LibStdCxxMarkerPatch
    {
        /// <summary>The library whose version requirement is relaxed.</summary>
        public const string LibraryName = "libstdc++.so.6";

        /// <summary>The version GCC 13 introduced.</summary>
        public const string Version = "GLIBCXX_3.4.32";

        /// <summary><c>std::ios_base_library_init()</c>, the marker GCC 13's &lt;iostream&gt; emits.</summary>
        public const string MarkerSymbol = "_ZSt21ios_base_library_initv";

        /// <summary>
        /// Applies the patch to an image in memory. <paramref name="hostVersions"/>, when given, are the versions the
        /// host's libstdc++ defines: if it defines <see cref="Version"/> nothing changes, and if the image needs any
        /// other libstdc++ version the host lacks the patch refuses, since marking one version weak could not make
        /// the file load. Throws <see cref="InvalidOperationException"/> when the patch would be unsafe.
        /// </summary>
        public static LibStdCxxPatchOutcome Apply(byte[] image, string name, ICollection<string>? hostVersions)
        {
            if (hostVersions != null && hostVersions.Contains(Version)) return LibStdCxxPatchOutcome.HostProvidesVersion;

            ElfDynamicImage elf = ElfDynamicImage.Parse(image, name);
            ElfVersionRequirement? requirement = elf.Requirements.FirstOrDefault(r => r.File == LibraryName && r.Version == Version);
            if (requirement == null) return LibStdCxxPatchOutcome.NotRequired;

            string[] bound = elf.SymbolsBoundTo(requirement).Where(s => s != MarkerSymbol).ToArray();
            if (bound.Length > 0)
            {
                throw new InvalidOperationException(
                    name + " binds " + bound.Length + " symbol(s) other than " + MarkerSymbol + " to " + Version + " (" +
                    string.Join(", ", bound.Take(5)) + (bound.Length > 5 ? ", ..." : "") + "). Marking the version weak would " +
                    "leave real functions unresolved, so the compatibility step refuses. Use a host with GCC 13's libstdc++ " +
                    "(GLIBCXX_3.4.32) or a TorchSharp build made for this distribution.");
            }

            if (hostVersions != null)
            {
                string[] missing = elf.Requirements
                    .Where(r => r.File == LibraryName && !r.IsWeak && r.Version != Version && !hostVersions.Contains(r.Version))
                    .Select(r => r.Version).Distinct().ToArray();
                if (missing.Length > 0)
                {
                    throw new InvalidOperationException(
                        name + " also needs " + string.Join(", ", missing) + " from " + LibraryName + ", which this host's " +
                        "libstdc++ lacks. The compatibility step only relaxes " + Version + " and cannot make this file load; " +
                        "install a newer libstdc++ or use a TorchSharp build made for this distribution.");
                }
            }

            if (requirement.IsWeak) return LibStdCxxPatchOutcome.AlreadyWeak;

            ushort flags = (ushort)(requirement.Flags | ElfDynamicImage.VerFlagWeak);
            image[requirement.FlagsOffset] = (byte)flags;
            image[requirement.FlagsOffset + 1] = (byte)(flags >> 8);
            return LibStdCxxPatchOutcome.Patched;
        }

        /// <summary>
        /// Applies the patch to a file. A changed file is written next to the original and renamed over it, so a
        /// hard or symbolic link into a package cache is replaced rather than written through. The new file keeps
        /// the original's last-write time: MSBuild's copy of unchanged files compares size and time, so the next
        /// incremental build leaves the patched copy alone instead of copying the package's file over it.
        /// </summary>
        public static LibStdCxxPatchOutcome ApplyToFile(string path, ICollection<string>? hostVersions)
        {
            if (hostVersions != null && hostVersions.Contains(Version)) return LibStdCxxPatchOutcome.HostProvidesVersion;

            byte[] image = File.ReadAllBytes(path);
            DateTime lastWrite = File.GetLastWriteTimeUtc(path);
            LibStdCxxPatchOutcome outcome = Apply(image, path, hostVersions);
            if (outcome != LibStdCxxPatchOutcome.Patched) return outcome;

            string temporary = path + ".kd-patch-" + Guid.NewGuid().ToString("N");
            try
            {
                File.Copy(path, temporary); // keeps the permission bits of the original
                File.WriteAllBytes(temporary, image);
                File.Delete(path); // unlink first: writing through a hard link would change the package cache
                File.Move(temporary, path);
                File.SetLastWriteTimeUtc(path, lastWrite);
            }
            finally
            {
                if (File.Exists(temporary)) File.Delete(temporary);
            }
            return outcome;
        }

        /// <summary>The versions a libstdc++ file defines.</summary>
        public static HashSet<string> DefinedVersions(string libStdCxxPath) =>
            new HashSet<string>(ElfDynamicImage.Parse(File.ReadAllBytes(libStdCxxPath), libStdCxxPath).DefinedVersions, StringComparer.Ordinal);

        /// <summary>
        /// The libstdc++.so.6 this host's loader would use: the one mapped into the current process (the .NET host
        /// links it, and the test or application process resolves it the same way), else the first one found in
        /// LD_LIBRARY_PATH and the usual library folders. Null when none is found.
        /// </summary>
        public static string? FindHostLibStdCxx()
        {
            try
            {
                if (File.Exists("/proc/self/maps"))
                {
                    foreach (string line in File.ReadAllLines("/proc/self/maps"))
                    {
                        // The kernel lists the resolved file (libstdc++.so.6.0.30), not the soname link.
                        int slash = line.IndexOf('/');
                        int name = line.LastIndexOf("/" + LibraryName, StringComparison.Ordinal);
                        string rest = name < 0 ? "" : line.Substring(name + LibraryName.Length + 1);
                        if (slash >= 0 && name >= 0 && (rest.Length == 0 || rest[0] == '.')) return line.Substring(slash);
                    }
                }
            }
            catch (IOException)
            {
                // /proc unavailable: fall back to the search below.
            }
            catch (UnauthorizedAccessException)
            {
                // Same.
            }

            var folders = (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "")
                .Split(new[] { ':' }, StringSplitOptions.RemoveEmptyEntries)
                .Concat(new[] { "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib" });
            return folders.Select(folder => Path.Combine(folder, LibraryName)).FirstOrDefault(File.Exists);
        }
    }

    /// <summary>
    /// MSBuild task: applies <see cref="LibStdCxxMarkerPatch"/> to each copy of libLibTorchSharp.so in a build or
    /// publish output folder when the host's libstdc++ lacks GLIBCXX_3.4.32; touches nothing otherwise.
    /// </summary>
    public sealed class PatchLibTorchSharpForLibStdCxx : Microsoft.Build.Utilities.Task
    {
        /// <summary>The output copies of libLibTorchSharp.so (never the package cache's).</summary>
        [Required]
        public ITaskItem[] Libraries { get; set; } = new ITaskItem[0];

        /// <summary>Overrides the host libstdc++.so.6 to compare against; empty means find it.</summary>
        public string? HostLibStdCxx { get; set; }

        /// <summary>The files this run changed.</summary>
        [Output]
        public ITaskItem[] PatchedLibraries { get; set; } = new ITaskItem[0];

        /// <inheritdoc />
        public override bool Execute()
        {
            string? host = string.IsNullOrEmpty(HostLibStdCxx) ? LibStdCxxMarkerPatch.FindHostLibStdCxx() : HostLibStdCxx;
            if (host == null || !File.Exists(host))
            {
                Log.LogMessage(MessageImportance.Normal,
                    "KnowledgeDistillation: no libstdc++.so.6 found on this host ({0}); libLibTorchSharp.so left as shipped.", host ?? "searched the usual folders");
                return true;
            }

            HashSet<string> hostVersions;
            try
            {
                hostVersions = LibStdCxxMarkerPatch.DefinedVersions(host);
            }
            catch (Exception e) when (e is InvalidDataException || e is IOException || e is UnauthorizedAccessException)
            {
                Log.LogError("KnowledgeDistillation: cannot read the host's libstdc++ ({0}): {1}", host, e.Message);
                return false;
            }

            var patched = new List<ITaskItem>();
            foreach (ITaskItem library in Libraries)
            {
                string path = library.GetMetadata("FullPath");
                try
                {
                    LibStdCxxPatchOutcome outcome = LibStdCxxMarkerPatch.ApplyToFile(path, hostVersions);
                    if (outcome == LibStdCxxPatchOutcome.Patched)
                    {
                        patched.Add(library);
                        Log.LogMessage(MessageImportance.High,
                            "KnowledgeDistillation: {0} lacks {1}; marked that requirement weak in {2} so it loads (see docs/troubleshooting.md; opt out with KnowledgeDistillationNativeCompatibility=false).",
                            host, LibStdCxxMarkerPatch.Version, path);
                    }
                    else
                    {
                        Log.LogMessage(MessageImportance.Normal, "KnowledgeDistillation: {0}: {1} (host libstdc++: {2}).", path, outcome, host);
                    }
                }
                catch (Exception e) when (e is InvalidDataException || e is InvalidOperationException || e is IOException || e is UnauthorizedAccessException)
                {
                    Log.LogError("KnowledgeDistillation native compatibility step failed for {0}: {1}", path, e.Message);
                }
            }
            PatchedLibraries = patched.ToArray();
            return !Log.HasLoggedErrors;
        }
    }
}
