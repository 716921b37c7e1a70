using System.Diagnostics;
using System.Text;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.TokenizerReference;

namespace KnowledgeDistillation.Benchmarks.Measurements;

/// <summary>
/// Throughput of <see cref="HuggingFaceTokenizer"/> on the committed tokenizer corpus, one thread, in MB of UTF-8 text
/// per second: the .NET half of tests/tokenizer-reference/compare_speed.sh, which runs the Rust library on the same
/// texts in the same run. Both libraries cache the tokens of words they have seen, so a corpus encoded twice measures the
/// cache: each of <c>repeats</c> rounds loads the tokenizer afresh, warms up on the first 300 texts and times one pass over
/// the other 2,755; the median round is reported.
/// </summary>
internal static class TokenizerSpeed
{
    public static int Run(string corpusPath, IReadOnlyList<string> namedPaths, int repeats = 5)
    {
        string[] texts = TokenizerCorpus.Read(corpusPath);
        const int warmUp = 300;
        double megabytes = texts.Skip(warmUp).Sum(t => Encoding.UTF8.GetByteCount(t)) / 1e6;
        foreach (string named in namedPaths)
        {
            // name=path
            (string name, string path) = (named[..named.IndexOf('=')], named[(named.IndexOf('=') + 1)..]);
            var rounds = new List<(double Seconds, double Load, long Ids)>();
            for (int r = 0; r < repeats; r++)
            {
                var load = Stopwatch.StartNew();
                HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.Load(path);
                double loadSeconds = load.Elapsed.TotalSeconds;
                foreach (string text in texts.Take(warmUp)) tokenizer.Encode(text);
                long ids = 0;
                var timer = Stopwatch.StartNew();
                foreach (string text in texts.Skip(warmUp)) ids += tokenizer.Encode(text).Ids.Count;
                rounds.Add((timer.Elapsed.TotalSeconds, loadSeconds, ids));
            }
            (double seconds, double loadTime, long count) = rounds.OrderBy(x => x.Seconds).ElementAt(rounds.Count / 2);
            Console.WriteLine($"dotnet\t{name}\t{megabytes / seconds:F2} MB/s\t{count / seconds:N0} ids/s\tload {loadTime:F2} s");
        }
        return 0;
    }
}
