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
}
