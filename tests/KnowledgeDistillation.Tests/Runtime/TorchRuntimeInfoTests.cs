using KnowledgeDistillation.Runtime;
using TorchSharp;

namespace KnowledgeDistillation.Tests.Runtime;

public class TorchRuntimeInfoTests
{
    [Fact]
    public void Probe_loads_the_native_backend_and_reports_the_cpu_package()
    {
        TorchRuntimeInfo info = TorchRuntimeInfo.Probe();

        info.TorchSharpVersion.Should().Be(BuildFacts.TorchSharpVersion);
        info.CudaAvailable.Should().BeFalse("the tests reference TorchSharp-cpu");
        info.CudaDeviceCount.Should().Be(0);
        info.DefaultDevice.Should().Be("cpu");
        info.IntraOpThreads.Should().BeInRange(1, Environment.ProcessorCount * 4);
    }

    [Fact]
    public void A_temperature_softened_softmax_on_the_resolved_device_matches_a_double_precision_loop()
    {
        double[] logits = [2.0, 1.0, 0.1, -3.0];
        const double temperature = 3.0;
        double[] expected = SoftmaxInDoubles(logits.Select(z => z / temperature).ToArray());
        torch.Device device = DeviceSelection.Resolve("auto");

        using var scope = torch.NewDisposeScope();
        float[] actual = torch.tensor(logits.Select(z => (float)z).ToArray(), device: device)
            .div(temperature).softmax(0).cpu().data<float>().ToArray();

        actual.Select(p => (double)p).Should().Equal(expected, (a, e) => Math.Abs(a - e) < 1e-6);
    }

    private static double[] SoftmaxInDoubles(double[] z)
    {
        double max = z.Max();
        double[] e = z.Select(v => Math.Exp(v - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }
}
