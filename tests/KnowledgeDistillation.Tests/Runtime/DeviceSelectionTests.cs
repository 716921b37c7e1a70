using KnowledgeDistillation.Runtime;
using TorchSharp;

namespace KnowledgeDistillation.Tests.Runtime;

public class DeviceSelectionTests
{
    [Theory]
    [InlineData("auto", false, 0, DeviceType.CPU, -1)]
    [InlineData("auto", true, 2, DeviceType.CUDA, 0)]
    [InlineData("cpu", true, 2, DeviceType.CPU, -1)]
    [InlineData(" CPU ", false, 0, DeviceType.CPU, -1)]
    [InlineData("cuda", true, 1, DeviceType.CUDA, 0)]
    [InlineData("cuda:1", true, 2, DeviceType.CUDA, 1)]
    public void Resolves_each_accepted_form(string name, bool cuda, int count, DeviceType type, int index)
    {
        torch.Device device = DeviceSelection.Resolve(name, cuda, count);

        device.type.Should().Be(type);
        device.index.Should().Be(index);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("")]
    public void Rejects_unknown_names_listing_the_accepted_forms(string name)
    {
        Action resolve = () => DeviceSelection.Resolve(name, true, 1);

        resolve.Should().Throw<ArgumentException>().Where(e => e.ParamName == "device")
            .WithMessage($"Unknown device \"{name}\". Expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"*");
    }

    [Fact]
    public void Rejects_cuda_without_a_cuda_backend_naming_the_packages()
    {
        Action resolve = () => DeviceSelection.Resolve("cuda", cudaAvailable: false, cudaDeviceCount: 0);

        resolve.Should().Throw<ArgumentException>().WithMessage("*\"cuda\"*not available*TorchSharp-cuda-linux*");
    }

    [Fact]
    public void Rejects_a_device_index_beyond_the_device_count()
    {
        Action resolve = () => DeviceSelection.Resolve("cuda:2", cudaAvailable: true, cudaDeviceCount: 2);

        resolve.Should().Throw<ArgumentException>().WithMessage("*\"cuda:2\"*2 CUDA device(s)*from 0 to 1*");
    }

    [Fact]
    public void The_process_backend_resolves_auto_to_cpu()
    {
        DeviceSelection.Resolve("auto").type.Should().Be(DeviceType.CPU);
    }
}
