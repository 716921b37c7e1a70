using KnowledgeDistillation.Pretrained;

namespace KnowledgeDistillation.Onnx;

/// <summary>
/// Whether a tokenizer's ids fit an imported model's word embedding. The model and its vocabulary travel as separate
/// files; pairing a model with another model's vocabulary gives wrong embeddings without any error, so the import
/// checks the pair it is given (or finds beside the file) before anyone trains on it.
/// </summary>
internal static class VocabularyCheck
{
    private static readonly string[] Layouts = ["vocab.txt", "tokenizer.model", "vocab.json", "tokenizer.json"];

    /// <summary>The folder to check: the one the caller named (which must exist), else the model's own folder when it holds tokenizer files.</summary>
    public static string? Folder(string? named, string? modelPath)
    {
        if (named is not null)
        {
            if (!Directory.Exists(named)) throw new ArgumentException($"TokenizerFolder must be an existing folder; {named} is not.", "options");
            return named;
        }
        string? beside = modelPath is null ? null : Path.GetDirectoryName(Path.GetFullPath(modelPath));
        return beside is not null && Layouts.Any(f => File.Exists(Path.Combine(beside, f))) ? beside : null;
    }

    public static void Against(string folder, int embeddingRows, string source, List<string> notes)
    {
        int entries;
        try
        {
            entries = PretrainedTokenizer.Load(folder).VocabularySize;
        }
        catch (NotSupportedException e)
        {
            notes.Add($"The tokenizer in {folder} was not checked against the word embedding: {e.Message}");
            return;
        }
        if (entries > embeddingRows)
        {
            throw new InvalidDataException($"{source}: the tokenizer in {folder} has {entries} entries, but the graph's word embedding has {embeddingRows} rows; " +
                "its ids past the last row would index outside the matrix. Pair the model with its own vocabulary.");
        }
        notes.Add(entries == embeddingRows
            ? $"The tokenizer in {folder} has {entries} entries, one per word embedding row."
            : $"The tokenizer in {folder} has {entries} entries and the word embedding {embeddingRows} rows: rows past {entries - 1} are never used (a padded matrix, or another model's vocabulary).");
    }
}
