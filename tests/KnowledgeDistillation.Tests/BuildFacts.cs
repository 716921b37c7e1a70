using System.Reflection;

namespace KnowledgeDistillation.Tests;

/// <summary>Paths the test project's build recorded (see the AssemblyMetadata items in the project file).</summary>
internal static class BuildFacts
{
    public static string RepositoryRoot => Metadata("RepositoryRoot");

    public static string NuGetPackageRoot => Metadata("NuGetPackageRoot");

    /// <summary>The crash-and-resume harness the tests start and kill.</summary>
    public static string CrashHarness => Metadata("CrashHarness");

    /// <summary>The teacher server host (samples/TeacherServer) the remote-teacher tests start and kill.</summary>
    public static string TeacherServerHost => Metadata("TeacherServerHost");

    /// <summary>The TorchSharp version the tests are built against (also pinned in Directory.Packages.props).</summary>
    public const string TorchSharpVersion = "0.107.0";

    private static string Metadata(string key) =>
        typeof(BuildFacts).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value
        ?? throw new InvalidOperationException($"Assembly metadata {key} is empty.");
}
