namespace KnowledgeDistillation.Tests.NativeCompatibility;

/// <summary>Where TorchSharp's native library lives, in the package cache and in this test's output folder.</summary>
internal static class TorchSharpPackage
{
    public static string LibTorchSharpInPackageCache => Path.Combine(
        BuildFacts.NuGetPackageRoot, "torchsharp", BuildFacts.TorchSharpVersion, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    public static string LibTorchSharpInOutput => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
}
