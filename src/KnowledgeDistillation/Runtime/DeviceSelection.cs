using System.Globalization;
using TorchSharp;

namespace KnowledgeDistillation.Runtime;

/// <summary>
/// Turns the device names used in options and on command lines — <c>"auto"</c>, <c>"cpu"</c>, <c>"cuda"</c>,
/// <c>"cuda:N"</c> — into a <see cref="torch.Device"/>, checking that the consumer's TorchSharp backend can serve it.
/// </summary>
public static class DeviceSelection
{
    /// <summary>Picks CUDA device 0 when the backend package provides CUDA, otherwise the CPU.</summary>
    public const string Auto = "auto";

    private const string Expected = "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\" with N a device index";

    /// <summary>Resolves <paramref name="device"/> against the backend loaded in this process.</summary>
    /// <exception cref="ArgumentException">The name is not one of the accepted forms, or names a CUDA device this process cannot use.</exception>
    public static torch.Device Resolve(string device) =>
        Resolve(device, torch.cuda.is_available(), torch.cuda.is_available() ? torch.cuda.device_count() : 0);

    /// <summary>Resolves <paramref name="device"/> given what CUDA offers; separated so every branch is testable on a CPU machine.</summary>
    internal static torch.Device Resolve(string device, bool cudaAvailable, int cudaDeviceCount)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!TryParse(device, out Choice choice, out int index)) throw new ArgumentException($"Unknown device \"{device}\". Expected {Expected}.", nameof(device));
        return choice switch
        {
            Choice.Auto => cudaAvailable ? new torch.Device(DeviceType.CUDA, 0) : new torch.Device(DeviceType.CPU),
            Choice.Cpu => new torch.Device(DeviceType.CPU),
            _ => RequireCuda(device, index, cudaAvailable, cudaDeviceCount),
        };
    }

    /// <summary>Whether <paramref name="device"/> is one of the accepted names (the grammar; not whether this process can use it).</summary>
    internal static bool IsValidName(string? device) => device is not null && TryParse(device, out _, out _);

    private enum Choice
    {
        Auto,
        Cpu,
        Cuda,
    }

    /// <summary>The one grammar of device names: "auto", "cpu", "cuda", "cuda:N" (case and surrounding spaces ignored).</summary>
    private static bool TryParse(string device, out Choice choice, out int index)
    {
        string name = device.Trim().ToLowerInvariant();
        index = 0;
        choice = name switch { Auto => Choice.Auto, "cpu" => Choice.Cpu, _ => Choice.Cuda };
        if (name is Auto or "cpu" or "cuda") return true;
        const string prefix = "cuda:";
        return name.StartsWith(prefix, StringComparison.Ordinal)
            && int.TryParse(name.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out index);
    }

    private static torch.Device RequireCuda(string device, int index, bool cudaAvailable, int cudaDeviceCount)
    {
        if (!cudaAvailable)
        {
            throw new ArgumentException(
                $"Device \"{device}\" was requested but CUDA is not available in this process. Reference a CUDA backend " +
                "package (TorchSharp-cuda-linux or TorchSharp-cuda-windows) instead of TorchSharp-cpu, or use \"auto\" or \"cpu\".",
                nameof(device));
        }
        if (index >= cudaDeviceCount)
        {
            throw new ArgumentException(
                $"Device \"{device}\" was requested but this machine has {cudaDeviceCount} CUDA device(s); expected an index from 0 to {cudaDeviceCount - 1}.",
                nameof(device));
        }
        return new torch.Device(DeviceType.CUDA, index);
    }
}
