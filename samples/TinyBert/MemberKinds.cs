using System.Runtime.InteropServices;
using System.Xml.Linq;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using static TorchSharp.torch;

namespace TinyBert;

/// <summary>
/// A real classification task found on every machine with the .NET SDK: from the first bytes of an API summary
/// in the reference-pack documentation, tell whether it documents a type, a method, a property or a field (the
/// "T:", "M:", "P:", "F:" prefix of its member name). Classes are balanced by taking the same number of each;
/// every tenth example (in file order) is held out for evaluation.
/// </summary>
internal sealed class MemberKinds
{
    public static readonly string[] Classes = ["type", "method", "property", "field"];
    private const string Prefixes = "TMPF";

    public MemberKinds(int perClass, int length)
    {
        string dotnet = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        string packs = Path.Combine(dotnet, "packs", "Microsoft.NETCore.App.Ref");
        string folder = Directory.GetDirectories(packs).SelectMany(v => Directory.GetDirectories(Path.Combine(v, "ref"))).OrderBy(f => f, StringComparer.Ordinal).Last();
        var examples = new List<(byte[] Text, int Label)>();
        var counts = new int[Classes.Length];
        foreach (string file in Directory.GetFiles(folder, "*.xml").OrderBy(f => f, StringComparer.Ordinal))
        {
            foreach (XElement member in XDocument.Load(file).Descendants("member"))
            {
                string name = (string?)member.Attribute("name") ?? "";
                int label = name.Length > 1 && name[1] == ':' ? Prefixes.IndexOf(name[0]) : -1;
                string summary = string.Join(' ', (member.Element("summary")?.Value ?? "").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
                if (label < 0 || summary.Length < 8 || counts[label] >= perClass) continue;
                counts[label]++;
                examples.Add((summary.Where(c => c >= ' ' && c <= '~').Take(length).Select(c => (byte)c).ToArray(), label));
            }
        }
        Source = folder;
        Length = length;
        Train = examples.Where((_, i) => i % 10 != 9).ToList();
        Validation = examples.Where((_, i) => i % 10 == 9).ToList();
    }

    public string Source { get; }

    public int Length { get; }

    public List<(byte[] Text, int Label)> Train { get; }

    public List<(byte[] Text, int Label)> Validation { get; }

    /// <summary>Batches in a fixed order (validation) or shuffled with torch's RNG (training), right-padded with a mask.</summary>
    public IEnumerable<DistillationBatch<TokenBatch>> Batches(List<(byte[] Text, int Label)> examples, int size, bool shuffle)
    {
        int[] order = shuffle ? randperm(examples.Count).data<long>().Select(i => (int)i).ToArray() : Enumerable.Range(0, examples.Count).ToArray();
        for (int start = 0; start + size <= order.Length; start += size)
        {
            var ids = new long[size * Length];
            var mask = new long[size * Length];
            var labels = new long[size];
            for (int row = 0; row < size; row++)
            {
                (byte[] text, int label) = examples[order[start + row]];
                for (int j = 0; j < text.Length; j++)
                {
                    ids[row * Length + j] = text[j];
                    mask[row * Length + j] = 1;
                }
                labels[row] = label;
            }
            yield return new DistillationBatch<TokenBatch>(new TokenBatch(tensor(ids, [size, Length]), tensor(mask, [size, Length])), tensor(labels)) { DisposeAfterUse = shuffle };
        }
    }
}
