using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers.Checkpoints;

/// <summary>
/// Loads checkpoints that use Hugging Face's parameter names into a model you configured: GPT-2
/// (<c>GPT2LMHeadModel</c> / <c>GPT2Model</c>) into <see cref="GptModel"/>, BERT (<c>BertModel</c>,
/// <c>BertForSequenceClassification</c>, <c>BertForMaskedLM</c>, <c>BertForPreTraining</c>) into
/// <see cref="BertModel"/>, Llama / Qwen2 / Mistral into <see cref="LlamaModel"/> — from safetensors, <c>.bin</c>
/// files, or checkpoint folders (sharded or not). The name mapping is listed in docs/models.md. Loading is
/// all-or-nothing: every tensor is built and its shape checked before any is written, so a checkpoint that does not
/// fit leaves the model as it was. To build the model from the folder's <c>config.json</c> instead, use
/// <see cref="PretrainedFolder"/>.
/// </summary>
/// <remarks>
/// When <c>path</c> is a folder with a <c>config.json</c>, the model's configuration is checked against it (layer
/// norm ε, activation, tying, sizes) and a difference is an error; without one, the report's notes say what was
/// assumed from the model's configuration.
/// </remarks>
public static class HuggingFaceCheckpoint
{
    /// <summary>Loads a GPT-2-shaped checkpoint file or folder into <paramref name="model"/>.</summary>
    public static CheckpointLoadReport LoadGpt2(GptModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        return WithFile(path, model.Config, stateDict => LoadGpt2(model, stateDict));
    }

    /// <summary>Loads a GPT-2-named state dict into <paramref name="model"/> (which must be pre-norm, as GPT-2 is).</summary>
    public static CheckpointLoadReport LoadGpt2(GptModel model, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stateDict);
        RequireShape(model.Config.NormPlacement == NormPlacement.Pre, "GPT-2 checkpoints need a GptConfig with NormPlacement.Pre", nameof(model));
        return HuggingFaceMappings.Gpt2(model.Config).Apply(model, stateDict, "GPT-2");
    }

    /// <summary>Loads a BERT-shaped checkpoint file or folder into <paramref name="model"/>.</summary>
    public static CheckpointLoadReport LoadBert(BertModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        return WithFile(path, model.Config, stateDict => LoadBert(model, stateDict));
    }

    /// <summary>
    /// Loads a BERT-named state dict into <paramref name="model"/> (which must be post-norm, as BERT is). The encoder
    /// must be complete; a head or pooler the checkpoint lacks stays as initialised and is listed in
    /// <see cref="CheckpointLoadReport.Initialized"/>, and heads the model lacks are listed as unused.
    /// </summary>
    public static CheckpointLoadReport LoadBert(BertModel model, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stateDict);
        RequireShape(model.Config.NormPlacement == NormPlacement.Post, "BERT checkpoints need a BertConfig with NormPlacement.Post", nameof(model));
        return HuggingFaceMappings.Bert(model.Config).Apply(model, stateDict, "BERT");
    }

    /// <summary>Loads a Llama-, Qwen2- or Mistral-shaped checkpoint file or folder into <paramref name="model"/>.</summary>
    public static CheckpointLoadReport LoadLlama(LlamaModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        return WithFile(path, model.Config, stateDict => LoadLlama(model, stateDict));
    }

    /// <summary>Loads a Llama-family state dict into <paramref name="model"/>.</summary>
    public static CheckpointLoadReport LoadLlama(LlamaModel model, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stateDict);
        return HuggingFaceMappings.Llama(model.Config).Apply(model, stateDict, "Llama-family");
    }

    private static void RequireShape(bool condition, string message, string parameter)
    {
        if (!condition) throw new ArgumentException(message + ".", parameter);
    }

    private static CheckpointLoadReport WithFile(string path, TransformerConfig model, Func<IReadOnlyDictionary<string, Tensor>, CheckpointLoadReport> load)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string folder = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path))!;
        List<string> notes = File.Exists(Path.Combine(folder, HuggingFaceConfig.FileName))
            ? ConfigAgreement.Check(HuggingFaceConfig.Read(folder), model)
            : ConfigAgreement.Assumed(model);
        Dictionary<string, Tensor> stateDict = StateDictFile.Read(path);
        try
        {
            CheckpointLoadReport report = load(stateDict);
            notes.AddRange(ConfigAgreement.DtypeNotes(stateDict.Values));
            return report with { Notes = [.. report.Notes, .. notes] };
        }
        finally
        {
            foreach (Tensor t in stateDict.Values) t.Dispose();
        }
    }
}
