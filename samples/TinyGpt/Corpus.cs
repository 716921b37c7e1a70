using System.Runtime.InteropServices;
using System.Text;
using System.Xml.Linq;

namespace TinyGpt;

/// <summary>
/// English text for a byte-level language model. By default the summaries of the .NET SDK's reference-pack
/// documentation (packs/Microsoft.NETCore.App.Ref/&lt;version&gt;/ref/net&lt;N&gt;/*.xml), which exists wherever the SDK is
/// installed; or any text file. Three splits of interleaved 4 KB blocks: of every ten, eight train, one validates
/// (every choice of the sample is made on it) and one is held out for the final table. Interleaving matters: the
/// files end with the x86/Arm intrinsics reference, which a "last 10%" split would turn into a different language.
/// </summary>
internal sealed record Corpus(byte[] Train, byte[] Validation, byte[] Test, string Source)
{
    private const int Block = 4096;

    public static Corpus Load(string? path)
    {
        byte[] text = path is null ? SdkDocumentation(out string source) : Ascii(File.ReadAllText(path), out source, path);
        if (text.Length < 20 * Block) throw new InvalidOperationException($"The corpus ({source}) has {text.Length} bytes; at least {20 * Block} are needed.");
        using var train = new MemoryStream();
        using var validation = new MemoryStream();
        using var test = new MemoryStream();
        for (int offset = 0, block = 0; offset < text.Length; offset += Block, block++)
        {
            MemoryStream split = (block % 10) switch { 4 => validation, 9 => test, _ => train };
            split.Write(text, offset, Math.Min(Block, text.Length - offset));
        }
        return new Corpus(train.ToArray(), validation.ToArray(), test.ToArray(), source);
    }

    private static byte[] SdkDocumentation(out string source)
    {
        // The running runtime lives in <dotnet>/shared/Microsoft.NETCore.App/<version>/.
        string dotnet = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        string packs = Path.Combine(dotnet, "packs", "Microsoft.NETCore.App.Ref");
        string? folder = Directory.Exists(packs)
            ? Directory.GetDirectories(packs).SelectMany(v => Directory.GetDirectories(Path.Combine(v, "ref"))).OrderBy(f => f, StringComparer.Ordinal).LastOrDefault()
            : null;
        if (folder is null) throw new InvalidOperationException($"No reference pack documentation under {packs}; pass --corpus with a text file.");
        var text = new StringBuilder();
        foreach (string file in Directory.GetFiles(folder, "*.xml").OrderBy(f => f, StringComparer.Ordinal))
        {
            foreach (XElement summary in XDocument.Load(file).Descendants("summary"))
            {
                string line = string.Join(' ', summary.Value.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
                if (line.Length > 0) text.Append(line).Append('\n');
            }
        }
        return Ascii(text.ToString(), out source, $"summaries of {folder}/*.xml");
    }

    private static byte[] Ascii(string text, out string source, string name)
    {
        source = name;
        return text.Where(c => c == '\n' || (c >= ' ' && c <= '~')).Select(c => (byte)c).ToArray();
    }
}
