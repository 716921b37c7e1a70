using KnowledgeDistillation.Transformers;
using Samples.Shared;
using ScottPlot;
using static TorchSharp.torch;

namespace TinyGpt;

/// <summary>The sample's figures, written as PNG files.</summary>
internal static class Plots
{
    /// <summary>Each student's validation perplexity during training (the first seed), and the teacher's as a line.</summary>
    public static string Curves(IReadOnlyList<StudentResult> students, double teacherValidation, string folder)
    {
        var plot = new Plot();
        foreach (StudentResult s in students.Where(s => s.Seed == 1))
        {
            var line = plot.Add.Scatter(s.Curve.Select(p => (double)p.Step).ToArray(), s.Curve.Select(p => p.Perplexity).ToArray());
            line.LegendText = Experiment.Describe(s.Kind);
            line.MarkerSize = 4;
        }
        var teacher = plot.Add.HorizontalLine(teacherValidation);
        teacher.LegendText = "teacher";
        teacher.LinePattern = LinePattern.Dashed;
        plot.Title("Students' validation perplexity during training (seed 1)");
        plot.XLabel("step");
        plot.YLabel("perplexity (bytes)");
        plot.ShowLegend(Alignment.UpperRight); // the curves fall from the upper left: the upper right stays empty
        string path = Path.Combine(folder, "loss-curves.png");
        plot.SavePng(path, 900, 500);
        return path;
    }

    /// <summary>The teacher's ten most likely next bytes after <paramref name="prompt"/>, softened at T = 1, 2, 3, 6.</summary>
    public static string Temperatures(GptModel teacher, string prompt, string folder, out IReadOnlyList<(string Token, double[] Probabilities)> rows)
    {
        double[] temperatures = [1, 2, 3, 6];
        float[] logits;
        using (no_grad())
        using (NewDisposeScope())
        {
            teacher.eval();
            Tensor ids = tensor(prompt.Select(c => (long)c).ToArray()).unsqueeze(0).to(SampleDevice.Of(teacher));
            logits = teacher.call(ids)[0, -1].cpu().data<float>().ToArray();
        }
        int[] top = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).Take(10).ToArray();
        double[][] probabilities = temperatures.Select(t => Softmax(logits, t)).ToArray();
        rows = top.Select(i => (Show((char)i), temperatures.Select((_, k) => probabilities[k][i]).ToArray())).ToList();

        var plot = new Plot();
        for (int k = 0; k < temperatures.Length; k++)
        {
            double[] positions = top.Select((_, i) => i + (k - 1.5) * 0.2).ToArray();
            var bars = plot.Add.Bars(positions, top.Select(i => probabilities[k][i]).ToArray());
            bars.LegendText = $"T = {temperatures[k]}";
            foreach (var bar in bars.Bars) bar.Size = 0.18;
        }
        plot.Axes.Bottom.SetTicks(top.Select((_, i) => (double)i).ToArray(), top.Select(i => Show((char)i)).ToArray());
        plot.Title($"Teacher's next-byte probabilities after \"{prompt}\"");
        plot.YLabel("probability, softmax(z / T)");
        plot.ShowLegend();
        string path = Path.Combine(folder, "temperatures.png");
        plot.SavePng(path, 900, 500);
        return path;
    }

    private static double[] Softmax(float[] logits, double temperature)
    {
        double max = logits.Max() / temperature;
        double[] e = logits.Select(z => Math.Exp(z / temperature - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }

    private static string Show(char c) => c switch { ' ' => "␣", '\n' => "\\n", _ => c.ToString() };
}
