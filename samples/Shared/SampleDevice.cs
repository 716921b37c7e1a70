using System.CommandLine;
using KnowledgeDistillation.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Samples.Shared;

/// <summary>The samples' <c>--device</c> option: "auto" (the GPU when the backend package provides one) unless told otherwise.</summary>
internal static class SampleDevice
{
    public static Option<string> Option() => new("--device")
    {
        Description = "\"auto\" (CUDA when the TorchSharp backend provides it, else the CPU), \"cpu\", \"cuda\" or \"cuda:N\".",
        DefaultValueFactory = _ => DeviceSelection.Auto,
    };

    /// <summary>The device a module's parameters are on (the CPU for a module without parameters).</summary>
    public static Device Of(nn.Module module) => module.parameters().Select(p => p.device).FirstOrDefault() ?? CPU;
}
