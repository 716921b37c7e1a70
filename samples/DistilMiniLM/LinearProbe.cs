using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace DistilMiniLM;

/// <summary>
/// A linear probe: logistic regression on (optionally standardised) features, fit on the task's label budget. The L2
/// penalty and the class weighting (none, or balanced for rare topics) are chosen on the validation texts by the
/// task's metric; the test texts are then scored once. The fit is deterministic (zero initialisation, full-batch Adam),
/// so a probe's result depends only on the features.
/// </summary>
internal static class LinearProbe
{
    private static readonly double[] Penalties = [1e-4, 1e-3, 1e-2, 1e-1];
    private const int Steps = 300;

    public sealed record Result(double Test, double TestBalancedAccuracy, double Validation, string Choice);

    public static Result Evaluate(LabelledTask task, Tensor train, Tensor validation, Tensor test, bool standardize = true)
    {
        using var scope = NewDisposeScope();
        Tensor mean = train.mean([0], keepdim: true), deviation = train.std(0, keepdim: true).clamp_min(1e-6);
        Tensor Standard(Tensor x) => standardize ? (x - mean) / deviation : x;
        Tensor x = Standard(train), xv = Standard(validation), xt = Standard(test);
        Tensor y = tensor(task.TrainLabels.Select(l => (long)l).ToArray());
        var grid = from penalty in Penalties from balanced in new[] { false, true } select (penalty, balanced);
        (double penalty, bool balanced, double score) best = grid
            .Select(c => (c.penalty, c.balanced, task.Score(Predict(Fit(x, y, c.penalty, c.balanced), xv), task.ValidationLabels)))
            .MaxBy(r => r.Item3);
        (Tensor W, Tensor B) probe = Fit(x, y, best.penalty, best.balanced);
        int[] predicted = Predict(probe, xt);
        return new Result(task.Score(predicted, task.TestLabels), LabelledTask.BalancedAccuracy(predicted, task.TestLabels), best.score,
            $"L2 {best.penalty:G1}{(best.balanced ? ", balanced" : "")}");
    }

    private static (Tensor W, Tensor B) Fit(Tensor x, Tensor labels, double penalty, bool balanced)
    {
        var w = new TorchSharp.Modules.Parameter(zeros(x.shape[1], 2));
        var b = new TorchSharp.Modules.Parameter(zeros(2));
        Tensor counts = bincount(labels, minlength: 2).to(ScalarType.Float32).clamp_min(1);
        Tensor? weights = balanced ? counts.sum() / (2 * counts) : null;
        var optimizer = optim.Adam([w, b], lr: 0.01);
        for (int step = 0; step < Steps; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            Tensor loss = F.cross_entropy(x.matmul(w) + b, labels, weight: weights) + penalty * w.square().sum();
            loss.backward();
            optimizer.step();
        }
        return (w.detach(), b.detach());
    }

    private static int[] Predict((Tensor W, Tensor B) probe, Tensor x)
    {
        using var scope = NewDisposeScope();
        return [.. (x.matmul(probe.W) + probe.B).argmax(-1).data<long>().ToArray().Select(v => (int)v)];
    }
}
