namespace DistilMiniLM;

/// <summary>How a task's quality is scored: accuracy for spam (31% positive), the positive class's F1 for Reuters' rare topics.</summary>
internal enum Metric { Accuracy, PositiveF1 }

/// <summary>A labelled task: text rows (indices into the <see cref="TextTable"/>) and labels for its three splits.</summary>
internal sealed record LabelledTask(string Name, Metric Metric, int[] Train, int[] TrainLabels, int[] Validation, int[] ValidationLabels, int[] Test, int[] TestLabels)
{
    public string MetricName => Metric == Metric.Accuracy ? "accuracy" : "F1 (positive class)";

    /// <summary>The task's score of <paramref name="predicted"/> against <paramref name="actual"/>.</summary>
    public double Score(IReadOnlyList<int> predicted, IReadOnlyList<int> actual)
    {
        if (Metric == Metric.Accuracy) return predicted.Zip(actual).Count(p => p.First == p.Second) / (double)actual.Count;
        int tp = predicted.Zip(actual).Count(p => p.First == 1 && p.Second == 1);
        int fp = predicted.Zip(actual).Count(p => p.First == 1 && p.Second == 0);
        int fn = predicted.Zip(actual).Count(p => p.First == 0 && p.Second == 1);
        return tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
    }

    /// <summary>Balanced accuracy: the mean of the two classes' recalls (reported beside the main metric).</summary>
    public static double BalancedAccuracy(IReadOnlyList<int> predicted, IReadOnlyList<int> actual)
    {
        double Recall(int c) => actual.Count(a => a == c) is int n and > 0 ? predicted.Zip(actual).Count(p => p.Second == c && p.First == c) / (double)n : 0;
        return (Recall(0) + Recall(1)) / 2;
    }
}

/// <summary>
/// The run's texts and splits. Every split is a fixed, stratified draw (seed 0), so all models see the same texts.
/// Test and validation texts are never in the transfer set; the label budget's texts may be (they are training texts,
/// and the transfer set uses no labels).
/// </summary>
internal sealed class Splits
{
    public required IReadOnlyList<string> Texts { get; init; }

    public required IReadOnlyList<LabelledTask> Tasks { get; init; }

    public required int[] Transfer { get; init; }

    public required string Description { get; init; }

    public static Splits Create(IReadOnlyList<LabelledText> spam, (IReadOnlyList<string> Train, IReadOnlyList<string> Test, int[] CornTrain, int[] CornTest, int[] GrainTrain, int[] GrainTest) reuters,
        IReadOnlyList<string> corpus, Settings settings)
    {
        var texts = new List<string>();
        int Add(string text)
        {
            texts.Add(text);
            return texts.Count - 1;
        }
        var random = new Random(0);

        // Spam: test, validation and label budget drawn per class in proportion; the rest is unlabelled.
        int[] spamRows = [.. spam.Select(s => Add(s.Text))];
        int[] spamLabels = [.. spam.Select(s => s.Label)];
        int[][] spamParts = Stratified(spamLabels, [settings.SpamTest, settings.Validation, settings.LabelBudget], random);
        LabelledTask spamTask = Task("spam", Metric.Accuracy, spamRows, spamLabels, spamParts[2], spamParts[1], spamParts[0]);

        // Reuters: the ModApte test split (or its first texts in quick mode); validation and label budget from its training split.
        int[] trainRows = [.. reuters.Train.Select(Add)];
        int[] testRows = [.. reuters.Test.Select(Add)];
        int[] combined = [.. reuters.CornTrain.Zip(reuters.GrainTrain, (c, g) => c * 2 + g)];
        int[][] reutersParts = Stratified(combined, [settings.Validation, Math.Min(settings.LabelBudget, reuters.Train.Count - settings.Validation)], random);
        int[] test = [.. Enumerable.Range(0, Math.Min(settings.ReutersTest, testRows.Length))];
        LabelledTask Reuters(string name, int[] trainLabels, int[] testLabels) => new(name, Metric.PositiveF1,
            [.. reutersParts[1].Select(i => trainRows[i])], [.. reutersParts[1].Select(i => trainLabels[i])],
            [.. reutersParts[0].Select(i => trainRows[i])], [.. reutersParts[0].Select(i => trainLabels[i])],
            [.. test.Select(i => testRows[i])], [.. test.Select(i => testLabels[i])]);

        int[] corpusRows = [.. corpus.Select(Add)];
        var heldOut = new HashSet<int>([.. spamTask.Test, .. spamTask.Validation, .. testRows, .. reutersParts[0].Select(i => trainRows[i])]);
        int[] pool = [.. spamRows.Concat(trainRows).Concat(corpusRows).Where(i => !heldOut.Contains(i))];
        int[] transfer = [.. pool.OrderBy(_ => random.Next()).Take(settings.Transfer)];
        int fromCorpus = transfer.Count(i => i >= corpusRows[0]);
        return new Splits
        {
            Texts = texts,
            Tasks = [spamTask, Reuters("reuters-corn", reuters.CornTrain, reuters.CornTest), Reuters("reuters-grain", reuters.GrainTrain, reuters.GrainTest)],
            Transfer = transfer,
            Description = $"{texts.Count:N0} texts; transfer set {transfer.Length:N0} unlabelled texts ({fromCorpus:N0} Moby-Dick paragraphs, the rest emails and Reuters training texts)",
        };
    }

    private static LabelledTask Task(string name, Metric metric, int[] rows, int[] labels, int[] train, int[] validation, int[] test) =>
        new(name, metric, [.. train.Select(i => rows[i])], [.. train.Select(i => labels[i])], [.. validation.Select(i => rows[i])], [.. validation.Select(i => labels[i])],
            [.. test.Select(i => rows[i])], [.. test.Select(i => labels[i])]);

    /// <summary>Disjoint draws of the given sizes (positions into <paramref name="strata"/>), each holding every stratum in proportion.</summary>
    private static int[][] Stratified(int[] strata, int[] sizes, Random random)
    {
        if (sizes.Sum() > strata.Length) throw new ArgumentException($"The splits need {sizes.Sum()} texts; only {strata.Length} exist.");
        var byStratum = strata.Select((s, i) => (s, i)).GroupBy(p => p.s).ToDictionary(g => g.Key, g => new Queue<int>(g.Select(p => p.i).OrderBy(_ => random.Next())));
        var parts = new int[sizes.Length][];
        for (int p = 0; p < sizes.Length; p++)
        {
            var part = new List<int>();
            foreach ((int stratum, Queue<int> queue) in byStratum.OrderBy(kv => kv.Key))
            {
                int take = (int)Math.Round(sizes[p] * (double)strata.Count(s => s == stratum) / strata.Length);
                for (int k = 0; k < take && queue.Count > 0; k++) part.Add(queue.Dequeue());
            }
            parts[p] = [.. part.OrderBy(i => i)];
        }
        return parts;
    }
}
