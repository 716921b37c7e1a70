// QuickStart: SoftTargetKLLoss and HardTargetCrossEntropyLoss dropped into a hand-written TorchSharp loop.
// A wide teacher learns a synthetic 10-class problem from 20,000 examples; a small student then learns from only
// 500 of them, once from the hard labels alone and once with the teacher's softened predictions as well.
using System.CommandLine;
using System.Globalization;
using KnowledgeDistillation.Losses;
using ScottPlot;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

var outputOption = new Option<string>("--output") { Description = "Folder for the plot.", DefaultValueFactory = _ => Path.Combine("artifacts", "samples", "quickstart") };
var quickOption = new Option<bool>("--quick") { Description = "Accepted for symmetry with the other samples: the whole run takes well under a minute." };
var root = new RootCommand("Plug SoftTargetKLLoss and HardTargetCrossEntropyLoss into a hand-written TorchSharp loop.") { outputOption, quickOption };
ParseResult parsed = root.Parse(args);
if (parsed.Errors.Count > 0 || parsed.Action is not null) return parsed.Invoke(); // --help, or bad arguments
string output = parsed.GetValue(outputOption)!;

manual_seed(0);
// The task: labels from a fixed random network, 10% of them flipped at random.
var truth = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 10));
(Tensor X, Tensor Y) Sample(int n)
{
    using var noGrad = no_grad();
    Tensor x = randn(n, 20), y = truth.call(x).argmax(-1);
    Tensor flip = rand(n).lt(0.1);
    return (x, where(flip, randint(0, 10, [n]), y));
}
var (teacherX, teacherY) = Sample(20_000);
var (studentX, studentY) = Sample(500);
var (testX, testY) = Sample(10_000);

double Accuracy(nn.Module<Tensor, Tensor> model)
{
    using var noGrad = no_grad();
    model.eval();
    double accuracy = model.call(testX).argmax(-1).eq(testY).to(ScalarType.Float32).mean().item<float>();
    model.train();
    return accuracy;
}

// An ordinary loop; `extraLoss` is where distillation plugs in.
List<double> Train(nn.Module<Tensor, Tensor> model, Tensor x, Tensor y, int epochs, Func<Tensor, Tensor, Tensor, Tensor> loss, string name)
{
    var optimizer = optim.Adam(model.parameters(), 3e-3);
    var accuracies = new List<double>();
    AnsiConsole.Progress().Start(ctx =>
    {
        ProgressTask task = ctx.AddTask(name, maxValue: epochs);
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            Tensor order = randperm(x.shape[0]);
            for (long start = 0; start < x.shape[0]; start += 100)
            {
                using var scope = NewDisposeScope();
                Tensor batch = order[TensorIndex.Slice(start, start + 100)];
                optimizer.zero_grad();
                loss(model.call(x[batch]), y[batch], x[batch]).backward();
                optimizer.step();
            }
            accuracies.Add(Accuracy(model));
            task.Increment(1);
        }
    });
    return accuracies;
}

var hard = new HardTargetCrossEntropyLoss();
var teacher = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10));
Train(teacher, teacherX, teacherY, 8, (logits, labels, _) => hard.call(logits, labels), "teacher (20,000 examples)");
teacher.eval();

nn.Module<Tensor, Tensor> NewStudent()
{
    manual_seed(1);
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10));
}

var alone = NewStudent();
List<double> aloneCurve = Train(alone, studentX, studentY, 60, (logits, labels, _) => hard.call(logits, labels), "student alone (500 examples)");

// Distillation: the same loop, plus the teacher's softened distribution on the same inputs.
var soft = new SoftTargetKLLoss(temperature: 4.0);
var distilled = NewStudent();
List<double> distilledCurve = Train(distilled, studentX, studentY, 60, (logits, labels, inputs) =>
{
    Tensor teacherLogits;
    using (no_grad()) teacherLogits = teacher.call(inputs);
    return 0.9 * soft.call(logits, teacherLogits) + 0.1 * hard.call(logits, labels);
}, "distilled student (500 examples)");

var table = new Table().AddColumns("model", "parameters", "test accuracy");
foreach (var (name, model) in new[] { ("teacher", teacher), ("student alone", alone), ("distilled student", distilled) })
{
    table.AddRow(name, model.parameters().Sum(p => p.numel()).ToString("N0", CultureInfo.InvariantCulture), Accuracy(model).ToString("P1", CultureInfo.InvariantCulture));
}
AnsiConsole.Write(table);

var plot = new Plot();
plot.Add.Scatter(Enumerable.Range(1, aloneCurve.Count).Select(e => (double)e).ToArray(), aloneCurve.ToArray()).LegendText = "student alone";
plot.Add.Scatter(Enumerable.Range(1, distilledCurve.Count).Select(e => (double)e).ToArray(), distilledCurve.ToArray()).LegendText = "distilled student";
plot.Add.HorizontalLine(Accuracy(teacher)).LegendText = "teacher";
plot.XLabel("epoch");
plot.YLabel("test accuracy");
plot.ShowLegend();
Directory.CreateDirectory(output);
plot.SavePng(Path.Combine(output, "accuracy.png"), 800, 450);
AnsiConsole.MarkupLine($"Plot: {Markup.Escape(Path.Combine(output, "accuracy.png"))}");

return Accuracy(distilled) > Accuracy(alone) ? 0 : 2;
