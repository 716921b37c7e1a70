using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Onnx;

/// <summary>A model imported from an ONNX graph, with what the import did.</summary>
/// <param name="Model">The trainable model, in evaluation mode, holding the graph's weights.</param>
/// <param name="Report">The weights loaded, the graph's initializers no weight consumed, and what was read or assumed (in <see cref="WeightLoadReport.Notes"/>).</param>
public sealed record OnnxImportedModel<TModel>(TModel Model, WeightLoadReport Report);

/// <summary>What <see cref="OnnxImport.Bert(string, OnnxBertImportOptions?)"/> cannot read from every graph.</summary>
public sealed record OnnxBertImportOptions
{
    /// <summary>The number of attention heads; null reads it from the graph's head split and attention scale (an error when the graph shows neither).</summary>
    public int? Heads { get; init; }

    /// <summary>
    /// A tokenizer folder (as <see cref="PretrainedTokenizer.Load"/> reads it) whose vocabulary must fit the graph's word
    /// embedding; null checks the folder of the ONNX file when it holds tokenizer files (a Hugging Face export does), and
    /// checks nothing otherwise. A vocabulary with more entries than the embedding has rows is an error (its ids would
    /// index past the matrix); one with fewer is noted in the report (matrices padded to a round size are common, a
    /// different model's vocabulary is the other cause).
    /// </summary>
    public string? TokenizerFolder { get; init; }
}

/// <summary>
/// Turns ONNX graphs back into trainable TorchSharp models: a teacher that exists only as an ONNX file can then be the
/// source of a student's layers (<c>StudentFactory</c>), be fine-tuned, or be saved as a Hugging Face folder.
/// </summary>
public static class OnnxImport
{
    /// <summary>
    /// Imports a Hugging Face BERT encoder exported to ONNX (<c>BertModel</c> as exported by torch.onnx or optimum, e.g.
    /// sentence-transformers' all-MiniLM-L6-v2): the result's <c>call(ids)</c> and <c>Run</c> give the graph's
    /// <c>last_hidden_state</c>. The configuration is read from the graph (weight shapes, head split, layer norm ε,
    /// GELU form); the weights load all or nothing, as <see cref="PretrainedFolder.LoadWeights(TorchSharp.torch.nn.Module, string)"/> loads a checkpoint.
    /// </summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not ONNX, or not a BERT encoder's graph, or a weight could not be named or placed, or the tokenizer's vocabulary is larger than the word embedding (the message says which).</exception>
    public static OnnxImportedModel<BertModel> Bert(string path, OnnxBertImportOptions? options = null)
    {
        if (options?.Heads is < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Heads, "Heads must be positive or null.");
        string? tokenizer = VocabularyCheck.Folder(options?.TokenizerFolder, path);
        return BertGraphImporter.Import(OnnxGraphReader.Open(path), options ?? new OnnxBertImportOptions(), tokenizer);
    }

    /// <summary>Imports a BERT encoder from an ONNX model in <paramref name="stream"/> (e.g. an embedded resource); <paramref name="source"/> names it in messages.</summary>
    public static OnnxImportedModel<BertModel> Bert(Stream stream, string source, OnnxBertImportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentException.ThrowIfNullOrEmpty(source);
        if (options?.Heads is < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Heads, "Heads must be positive or null.");
        string? tokenizer = VocabularyCheck.Folder(options?.TokenizerFolder, modelPath: null);
        return BertGraphImporter.Import(OnnxGraphReader.Open(stream, source), options ?? new OnnxBertImportOptions(), tokenizer);
    }

    /// <summary>
    /// Reads back a <see cref="GptModel"/> exported by <see cref="OnnxExport.Export(GptModel, string, bool, OnnxExportOptions?)"/>
    /// (a student shipped as ONNX, to train further or to save as a Hugging Face folder): configuration from the graph,
    /// every parameter from its initializer, the model equal to the exported one.
    /// </summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not ONNX, or not a GptModel export of this library, or a parameter is missing or misshapen (the message names it).</exception>
    public static OnnxImportedModel<GptModel> Gpt(string path) => GptGraphImporter.Import(OnnxGraphReader.Open(path));

    /// <summary>
    /// Reads back a <see cref="LlamaModel"/> (Llama, Qwen2 or Mistral layout) exported by
    /// <see cref="OnnxExport.Export(LlamaModel, string, bool, OnnxExportOptions?)"/>: configuration from the graph (the family
    /// inferred from biases and window, and said so in the notes), every parameter from its initializer.
    /// </summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not ONNX, or not a LlamaModel export of this library, or a parameter is missing or misshapen (the message names it).</exception>
    public static OnnxImportedModel<LlamaModel> Llama(string path) => LlamaGraphImporter.Import(OnnxGraphReader.Open(path));
}
