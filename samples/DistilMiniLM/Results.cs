using System.Globalization;
using System.Text;
using KnowledgeDistillation.Pretrained;
using ScottPlot;
using Spectre.Console;

namespace DistilMiniLM;

/// <summary>The rows of the results table: each model's scores over its seeds, in the order they were added.</summary>
internal sealed class Results(Settings settings, IReadOnlyList<LabelledTask> tasks)
{
    private sealed class Row(string name, string parameters)
    {
        public string Name { get; } = name;
        public string Parameters { get; } = parameters;
        public Dictionary<string, List<double>> Scores { get; } = [];
        public Dictionary<string, List<double>> Balanced { get; } = [];
        public Dictionary<string, List<string>> Choices { get; } = [];
        public List<double> Cosines { get; } = [];
        public List<double> Recalls { get; } = [];
        public List<double> Seconds { get; } = [];
    }

    private readonly List<Row> _rows = [];

    private Row Get(string name, string parameters)
    {
        Row? row = _rows.FirstOrDefault(r => r.Name == name);
        if (row is null) _rows.Add(row = new Row(name, parameters));
        return row;
    }

    public void Add(string name, string parameters, LinearProbe.Result probe, LabelledTask task) =>
        Add(name, parameters, new Scores(new Dictionary<string, LinearProbe.Result> { [task.Name] = probe }, null, null));

    public void Add(string name, string parameters, Scores scores, double? seconds = null, LabelledTask? task = null)
    {
        Row row = Get(name, parameters);
        foreach ((string t, LinearProbe.Result r) in scores.Probes)
        {
            Append(row.Scores, t, r.Test);
            Append(row.Balanced, t, r.TestBalancedAccuracy);
            if (!row.Choices.TryGetValue(t, out List<string>? c)) row.Choices[t] = c = [];
            c.Add(r.Choice);
        }
        if (scores.Cosine is double cos) row.Cosines.Add(cos);
        if (scores.RecallAt10 is double recall) row.Recalls.Add(recall);
        if (seconds is double s) row.Seconds.Add(s);
        string probes = string.Join(", ", scores.Probes.Select(p => $"{p.Key} {p.Value.Test:P1} (validation {p.Value.Validation:P1}, {p.Value.Choice})"));
        string agreement = scores.Cosine is null ? "" : $"; cosine to teacher {scores.Cosine:F3}, neighbours@10 {scores.RecallAt10:P1}";
        AnsiConsole.MarkupLine($"  {Markup.Escape(name)}: {Markup.Escape(probes)}{Markup.Escape(agreement)}");
    }

    private static void Append(Dictionary<string, List<double>> map, string key, double value)
    {
        if (!map.TryGetValue(key, out List<double>? list)) map[key] = list = [];
        list.Add(value);
    }

    private static string Mean(List<double>? values, Func<double, string> format) =>
        values is null || values.Count == 0 ? "—" : values.Count == 1 ? format(values[0]) : $"{format(values.Average())} ± {format(Spread(values)).TrimEnd('%')}";

    public static double Spread(IReadOnlyList<double> v)
    {
        double mean = v.Average();
        return Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / Math.Max(1, v.Count - 1));
    }

    private static string Pct(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";

    public string Markdown(Deployment deployment, TimeSpan elapsed, TextTable table, Splits splits, WeightLoadReport import, IEnumerable<(string Key, Recipe Recipe, double LabelsOnlyRate)> recipes)
    {
        var s = new StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture, $"{splits.Description}; texts cut to {table.MaxTokens} tokens ({table.Truncated:N0} were longer). " +
            $"Probes: logistic regression on {settings.LabelBudget} labelled texts per task, choices on {settings.Validation} validation texts, test scored once. " +
            $"Students: mean ± standard deviation over {settings.Seeds} seed(s).");
        s.AppendLine();
        s.Append("| model | parameters |");
        foreach (LabelledTask t in tasks) s.Append(CultureInfo.InvariantCulture, $" {t.Name} ({(t.Metric == Metric.Accuracy ? "accuracy" : "F1")}) |");
        s.AppendLine(" cosine to teacher | neighbours@10 | training time |");
        s.AppendLine("|---|---:|" + string.Concat(tasks.Select(_ => "---:|")) + "---:|---:|---:|");
        foreach (Row r in _rows)
        {
            s.Append(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Parameters} |");
            foreach (LabelledTask t in tasks) s.Append(CultureInfo.InvariantCulture, $" {Mean(r.Scores.GetValueOrDefault(t.Name), Pct)} |");
            string seconds = r.Seconds.Count == 0 ? "—" : $"{r.Seconds.Average():F0} s per seed";
            s.AppendLine(CultureInfo.InvariantCulture, $" {Mean(r.Cosines, v => v.ToString("F3", CultureInfo.InvariantCulture))} | {Mean(r.Recalls, Pct)} | {seconds} |");
        }
        s.AppendLine();
        s.AppendLine("Balanced accuracy on the same test texts (mean of the two classes' recalls):");
        s.AppendLine();
        s.AppendLine("| model |" + string.Concat(tasks.Select(t => $" {t.Name} |")));
        s.AppendLine("|---|" + string.Concat(tasks.Select(_ => "---:|")));
        foreach (Row r in _rows) s.AppendLine($"| {r.Name} |" + string.Concat(tasks.Select(t => $" {Mean(r.Balanced.GetValueOrDefault(t.Name), Pct)} |")));
        s.AppendLine();
        s.AppendLine("Training, chosen on validation by `--sweep`: " + string.Join("; ", recipes.Select(r =>
            $"student {r.Key} distilled with {r.Recipe} (batch {r.Recipe.BatchSize}), its labels-only controls lr {r.LabelsOnlyRate:G2} for {settings.LabelEpochs} epochs")) + ".");
        s.AppendLine();
        s.AppendLine("Probe choices made on validation (L2 penalty, class weighting): " + string.Join("; ", _rows.Take(3).Select(r =>
            $"{r.Name}: " + string.Join(", ", r.Choices.Select(c => $"{c.Key} {string.Join("/", c.Value.Distinct())}")))));
        s.AppendLine();
        s.AppendLine(deployment.Markdown());
        s.AppendLine(Verdict(deployment));
        s.AppendLine(CultureInfo.InvariantCulture, $"Teacher import: {import.Loaded.Count} tensors loaded from the ONNX graph, {import.Unused.Count} unused. {string.Join(" ", import.Notes)}");
        s.AppendLine();
        s.AppendLine(CultureInfo.InvariantCulture, $"Total time {elapsed.TotalMinutes:F1} min.");
        return s.ToString();
    }

    /// <summary>The issue's aims, each stated as measured, whichever way it went.</summary>
    private string Verdict(Deployment deployment)
    {
        Row teacher = _rows.First(r => r.Name.Contains("teacher", StringComparison.Ordinal));
        var s = new StringBuilder("Aims (share of the teacher's probe score per task; speed at batch 32 and at batch 1):\n\n");
        foreach ((string key, double share, double speed) in new[] { ("student A", 0.97, 1.8), ("student B", 0.92, 8.0) })
        {
            // By the arm's exact suffix: the untrained row ("…, not distilled") must not be taken for the distilled one.
            Row? Arm(string suffix) => _rows.FirstOrDefault(r => r.Name.StartsWith(key + ":", StringComparison.Ordinal) && r.Name.EndsWith(suffix, StringComparison.Ordinal));
            Row? distilled = Arm(", distilled"), labels = Arm(", labels only"), tuned = Arm(", distilled, then labels");
            if (distilled is null) continue;
            var parts = new List<string>();
            foreach (LabelledTask t in tasks)
            {
                double kept = distilled.Scores[t.Name].Average() / Math.Max(1e-9, teacher.Scores[t.Name].Average());
                string control = labels?.Scores.GetValueOrDefault(t.Name) is { } c ? (distilled.Scores[t.Name].Average() > c.Average() ? "beats" : "does not beat") + " its labels-only control" : "";
                if (labels?.Scores.GetValueOrDefault(t.Name) is { } c2 && tuned?.Scores.GetValueOrDefault(t.Name) is { } f)
                {
                    control += $"; distilled then fine-tuned {(f.Average() > c2.Average() ? "beats" : "does not beat")} it ({100 * f.Average():F1}% vs {100 * c2.Average():F1}%)";
                }
                parts.Add($"{t.Name} {100 * kept:F1}% of the teacher ({(kept >= share ? "meets" : "misses")} ≥ {100 * share:F0}%), {control}");
            }
            (double batch1, double batch32) = deployment.SpeedUp(key);
            parts.Add($"{batch32:F1}× the teacher's texts/s at batch 32 and {batch1:F1}× at batch 1 ({(Math.Min(batch1, batch32) >= speed ? "meets" : batch32 >= speed ? "meets at batch 32 only" : "misses")} ≥ {speed}×)");
            s.AppendLine($"- **{key}**: {string.Join("; ", parts)}.");
        }
        return s.ToString();
    }

    public void Plot(string path)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var bars = new List<Bar>();
        for (int r = 0; r < _rows.Count; r++)
        {
            for (int t = 0; t < tasks.Count; t++)
            {
                if (!_rows[r].Scores.TryGetValue(tasks[t].Name, out List<double>? v)) continue;
                bars.Add(new Bar
                {
                    Position = t * (_rows.Count + 1) + r, Value = 100 * v.Average(), FillColor = palette.GetColor(r),
                    Error = v.Count > 1 ? 100 * Spread(v) : 0,
                });
            }
        }
        plot.Add.Bars(bars);
        plot.Axes.Bottom.SetTicks([.. tasks.Select((_, t) => t * (_rows.Count + 1) + (_rows.Count - 1) / 2.0)], [.. tasks.Select(t => $"{t.Name} ({t.MetricName})")]);
        for (int r = 0; r < _rows.Count; r++) plot.Legend.ManualItems.Add(new LegendItem { LabelText = _rows[r].Name, FillColor = palette.GetColor(r) });
        plot.ShowLegend(Alignment.LowerLeft);
        plot.YLabel("linear-probe test score (%)");
        plot.Axes.SetLimitsY(0, 100);
        plot.Title("Real text, real teacher: all-MiniLM-L6-v2 and its distilled students");
        plot.SavePng(path, 1300, 650);
        AnsiConsole.MarkupLine($"Plot: {Markup.Escape(path)}");
    }
}
