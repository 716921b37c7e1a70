using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace KnowledgeDistillation.Benchmarks;

/// <summary>
/// Runs benchmarks in this process (the native TorchSharp library is already loaded and patched for the host) with
/// a fixed, modest number of iterations so that a run fits a 2-core machine; results go to artifacts/benchmarks.
/// </summary>
internal sealed class InProcessConfig : ManualConfig
{
    public InProcessConfig()
    {
        AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(3).WithIterationCount(12).WithId("in-process"));
        ArtifactsPath = Path.Combine("artifacts", "benchmarks");
        Options |= ConfigOptions.JoinSummary;
    }
}
