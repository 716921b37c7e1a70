using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace OnnxTeacherSample;

/// <summary>
/// A linear probe: multinomial logistic regression on standardised features, fit on the labelled images. Its L2
/// weight is chosen on the validation images; its accuracy is then measured once on the test images. The fit is
/// deterministic (zero initialisation, full-batch Adam), so a probe's result depends only on the features.
/// </summary>
internal static class LinearProbe
{
    private static readonly double[] Penalties = [1e-4, 1e-3, 1e-2, 1e-1];
    private const int Steps = 300;

    public sealed record Result(double TestAccuracy, double ValidationAccuracy, double Penalty);

    public static Result Evaluate(Tensor train, Tensor trainLabels, Tensor validation, Tensor validationLabels, Tensor test, Tensor testLabels)
    {
        using var scope = NewDisposeScope();
        Tensor mean = train.mean([0], keepdim: true), deviation = train.std(0, keepdim: true).clamp_min(1e-6);
        Tensor Standard(Tensor x) => (x - mean) / deviation;
        Tensor x = Standard(train), xv = Standard(validation), xt = Standard(test);
        (double penalty, double validationAccuracy) = Penalties
            .Select(p => (p, Accuracy(Fit(x, trainLabels, p), xv, validationLabels)))
            .MaxBy(r => r.Item2);
        return new Result(Accuracy(Fit(x, trainLabels, penalty), xt, testLabels), validationAccuracy, penalty);
    }

    private static (Tensor W, Tensor B) Fit(Tensor x, Tensor labels, double penalty)
    {
        var w = new TorchSharp.Modules.Parameter(zeros(x.shape[1], 10));
        var b = new TorchSharp.Modules.Parameter(zeros(10));
        var optimizer = optim.Adam([w, b], lr: 0.01);
        for (int step = 0; step < Steps; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            Tensor loss = F.cross_entropy(x.matmul(w) + b, labels) + penalty * w.square().sum();
            loss.backward();
            optimizer.step();
        }
        return (w.detach(), b.detach());
    }

    private static double Accuracy((Tensor W, Tensor B) probe, Tensor x, Tensor labels)
    {
        using var scope = NewDisposeScope();
        return (x.matmul(probe.W) + probe.B).argmax(-1).eq(labels).to(ScalarType.Float64).mean().item<double>();
    }
}
