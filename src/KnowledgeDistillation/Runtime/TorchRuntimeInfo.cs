using System.Reflection;
using TorchSharp;

namespace KnowledgeDistillation.Runtime;

/// <summary>What the TorchSharp backend loaded in this process provides.</summary>
/// <param name="TorchSharpVersion">The informational version of the TorchSharp assembly, e.g. <c>0.107.0</c>.</param>
/// <param name="CudaAvailable">Whether the backend package provides CUDA and a device is visible.</param>
/// <param name="CudaDeviceCount">Number of visible CUDA devices (0 without CUDA).</param>
/// <param name="IntraOpThreads">Threads libtorch uses inside one CPU operation.</param>
/// <param name="DefaultDevice">The device <see cref="DeviceSelection.Auto"/> resolves to.</param>
public sealed record TorchRuntimeInfo(string TorchSharpVersion, bool CudaAvailable, int CudaDeviceCount, int IntraOpThreads, string DefaultDevice)
{
    /// <summary>
    /// Loads the native backend (if it is not loaded yet), runs one operation on it and reports what it found.
    /// </summary>
    /// <exception cref="InvalidOperationException">The native backend could not be loaded; the message says what to check.</exception>
    public static TorchRuntimeInfo Probe()
    {
        try
        {
            bool cuda = torch.cuda.is_available();
            int count = cuda ? torch.cuda.device_count() : 0;
            torch.Device device = DeviceSelection.Resolve(DeviceSelection.Auto, cuda, count);

            // One real operation on the chosen device proves the native library does work, not just load.
            using (torch.NewDisposeScope())
            {
                float sum = torch.ones(2, 2, device: device).matmul(torch.ones(2, 2, device: device)).sum().cpu().item<float>();
                if (sum != 8f) throw new InvalidOperationException($"The TorchSharp backend computed ones(2,2) @ ones(2,2) summing to {sum}, expected 8.");
            }

            return new TorchRuntimeInfo(TorchSharpAssemblyVersion(), cuda, count, torch.get_num_threads(), device.ToString());
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException)
        {
            throw new InvalidOperationException(
                "TorchSharp's native backend did not load. Reference exactly one backend package in the application " +
                "(TorchSharp-cpu, TorchSharp-cuda-linux or TorchSharp-cuda-windows). On Debian 12 or Ubuntu 22.04, " +
                "libLibTorchSharp.so needs GLIBCXX_3.4.32: KnowledgeDistillation's build step patches the output copy " +
                "unless KnowledgeDistillationNativeCompatibility is false (see docs/troubleshooting.md). Inner error: " + e.Message,
                e);
        }
    }

    private static string TorchSharpAssemblyVersion()
    {
        Assembly assembly = typeof(torch).Assembly;
        string? informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        // Strip a "+commit" suffix if the build added one.
        return informational?.Split('+')[0] ?? assembly.GetName().Version?.ToString() ?? "unknown";
    }
}
