using KnowledgeDistillation.Training;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>
/// The flushes of the checkpoint write path. Whether data survives a power loss cannot be observed from a test; what
/// can be is that the calls reach the operating system for real files and folders and fail loudly otherwise.
/// </summary>
public class DurabilityTests
{
    [Fact]
    public void Files_and_folders_are_flushed_and_a_missing_folder_is_an_error_naming_it()
    {
        using var folder = new TemporaryFolder();
        string file = folder.Write("data.bin", [1, 2, 3]);

        Durability.FlushFile(file);
        Durability.FlushDirectory(folder.Path);
        File.ReadAllBytes(file).Should().Equal(1, 2, 3);

        string missing = Path.Combine(folder.Path, "missing");
        Action flushMissing = () => Durability.FlushDirectory(missing);
        if (OperatingSystem.IsWindows()) flushMissing.Should().NotThrow("Windows journals renames; there is nothing to flush");
        else flushMissing.Should().Throw<IOException>().WithMessage($"*{missing}*");
    }
}
