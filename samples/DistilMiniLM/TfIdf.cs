using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace DistilMiniLM;

/// <summary>
/// The classic baseline: TF-IDF of lower-cased word unigrams and bigrams (vocabulary and IDF from the task's label
/// budget, terms in at least two texts, the 5,000 most frequent), sublinear term frequency, L2-normalised rows —
/// probed by the same logistic regression as every embedding.
/// </summary>
internal static partial class TfIdf
{
    private const int MaxTerms = 5000;

    public static (Tensor Train, Tensor Validation, Tensor Test) Features(IReadOnlyList<string> texts, LabelledTask task)
    {
        List<string>[] Terms(int[] rows) => [.. rows.Select(i => TermsOf(texts[i]))];
        List<string>[] train = Terms(task.Train);
        var documentFrequency = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (List<string> doc in train) foreach (string term in doc.Distinct()) documentFrequency[term] = documentFrequency.GetValueOrDefault(term) + 1;
        string[] vocabulary = [.. documentFrequency.Where(kv => kv.Value >= 2).OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Take(MaxTerms).Select(kv => kv.Key)];
        var column = vocabulary.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i, StringComparer.Ordinal);
        double[] idf = [.. vocabulary.Select(t => Math.Log((1.0 + train.Length) / (1.0 + documentFrequency[t])) + 1)];
        Tensor Matrix(List<string>[] docs)
        {
            var values = new float[docs.Length * vocabulary.Length];
            for (int d = 0; d < docs.Length; d++)
            {
                foreach (var group in docs[d].Where(column.ContainsKey).GroupBy(t => t))
                {
                    int c = column[group.Key];
                    values[d * vocabulary.Length + c] = (float)((1 + Math.Log(group.Count())) * idf[c]);
                }
                double norm = Math.Sqrt(Enumerable.Range(0, vocabulary.Length).Sum(c => (double)values[d * vocabulary.Length + c] * values[d * vocabulary.Length + c]));
                if (norm > 0) for (int c = 0; c < vocabulary.Length; c++) values[d * vocabulary.Length + c] /= (float)norm;
            }
            return tensor(values, [docs.Length, vocabulary.Length]);
        }
        return (Matrix(train), Matrix(Terms(task.Validation)), Matrix(Terms(task.Test)));
    }

    private static List<string> TermsOf(string text)
    {
        string[] words = [.. Word().Matches(text.ToLowerInvariant()).Select(m => m.Value)];
        var terms = new List<string>(words);
        for (int i = 0; i + 1 < words.Length; i++) terms.Add(words[i] + " " + words[i + 1]);
        return terms;
    }

    [GeneratedRegex(@"[\p{L}\p{N}][\p{L}\p{N}'_-]*")]
    private static partial Regex Word();
}
