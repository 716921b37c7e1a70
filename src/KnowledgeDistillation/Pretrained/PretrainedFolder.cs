using KnowledgeDistillation.Formats;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>
/// Hugging Face pretrained folders in and out, the one way to read and write them: <see cref="Load"/> reads
/// <c>config.json</c>, builds the matching reference model and loads its weights (safetensors, sharded safetensors or
/// <c>pytorch_model.bin</c>); <see cref="LoadWeights(nn.Module, string)"/> loads Hugging Face-named weights into a model
/// you configured; <see cref="Save"/> writes <c>config.json</c> and <c>model.safetensors</c> in Hugging Face names and
/// layouts, so that <c>transformers</c> loads the folder unchanged. Supported: <c>GPT2LMHeadModel</c>,
/// <c>GPT2Model</c>, <c>BertModel</c>, <c>BertForSequenceClassification</c>, <c>BertForMaskedLM</c>,
/// <c>BertForPreTraining</c> (loaded with its masked-LM head), <c>LlamaForCausalLM</c>, <c>Qwen2ForCausalLM</c>,
/// <c>MistralForCausalLM</c>. Loading is all-or-nothing: every tensor is built and its shape checked before any is
/// written, so weights that do not fit leave the model as it was.
/// </summary>
public static class PretrainedFolder
{
    /// <summary>Reads and translates a folder's <c>config.json</c> without loading weights.</summary>
    /// <exception cref="FileNotFoundException">The folder has no <c>config.json</c>.</exception>
    /// <exception cref="InvalidDataException">A required field is missing or has the wrong type (the message names the file and the field).</exception>
    /// <exception cref="NotSupportedException">The architecture, or a field's value, is not supported (the message names it).</exception>
    public static PretrainedConfig ReadConfig(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"No pretrained folder at {folder}.");
        return HuggingFaceConfig.Read(folder);
    }

    /// <summary>Builds the model <c>config.json</c> describes and loads the folder's weights into it, all or nothing.</summary>
    /// <exception cref="InvalidDataException">The weights do not fit the configuration, or a file is damaged (the message names it).</exception>
    public static PretrainedModel<IModuleModel<TokenBatch>> Load(string folder)
    {
        PretrainedConfig source = ReadConfig(folder);
        ModelFamily family = ModelFamilies.OfModelType(source.ModelType)!;
        nn.Module model = family.Build(source.Config);
        try
        {
            Dictionary<string, Tensor> stateDict = StateDictFile.Read(folder);
            WeightLoadReport report;
            try
            {
                report = family.Mapping(model, source.Architecture).Apply(model, stateDict, source.Architecture);
                report = report with { Notes = [.. source.Notes, .. ConfigAgreement.DtypeNotes(stateDict.Values)] };
            }
            finally
            {
                foreach (Tensor t in stateDict.Values) t.Dispose();
            }
            model.eval();
            return new PretrainedModel<IModuleModel<TokenBatch>>((IModuleModel<TokenBatch>)model, source, report);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Loads a folder whose architecture must be a <typeparamref name="TModel"/> (<see cref="GptModel"/>, <see cref="BertModel"/> or <see cref="LlamaModel"/>).</summary>
    /// <exception cref="ArgumentException">The folder holds another architecture (the message names it and the class to use).</exception>
    public static PretrainedModel<TModel> Load<TModel>(string folder) where TModel : nn.Module, IModuleModel<TokenBatch>
    {
        PretrainedConfig source = ReadConfig(folder);
        string actual = ModelFamilies.OfModelType(source.ModelType)!.ModelClass.Name;
        if (actual != typeof(TModel).Name)
        {
            throw new ArgumentException($"{folder} holds a {source.Architecture}, which loads as {actual}, not {typeof(TModel).Name}; use PretrainedFolder.Load<{actual}> or PretrainedFolder.Load.", nameof(folder));
        }
        PretrainedModel<IModuleModel<TokenBatch>> loaded = Load(folder);
        return new PretrainedModel<TModel>((TModel)loaded.Model, loaded.Source, loaded.Report);
    }

    /// <summary>
    /// Loads a checkpoint that uses Hugging Face's parameter names — a safetensors or <c>.bin</c> file, or a folder
    /// (sharded or not) — into a model you configured: GPT-2 into <see cref="GptModel"/>, BERT into <see cref="BertModel"/>,
    /// Llama / Qwen2 / Mistral into <see cref="LlamaModel"/>. When the checkpoint has a <c>config.json</c> beside it, the
    /// model's configuration is checked against it (layer norm ε, activation, tying, sizes) and a difference is an
    /// error; without one, the report's notes say what was assumed from the model's configuration. All or nothing.
    /// </summary>
    /// <exception cref="NotSupportedException">The model's class has no Hugging Face layout.</exception>
    /// <exception cref="InvalidDataException">The checkpoint does not fit the model, or its config.json disagrees (the message lists each difference); the model is unchanged.</exception>
    public static WeightLoadReport LoadWeights(nn.Module model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ModelFamily family = ModelFamilies.Of(model);
        family.RequireLoadable(model);
        TransformerConfig config = family.ConfigOf(model);
        string folder = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path))!;
        List<string> notes = File.Exists(Path.Combine(folder, HuggingFaceConfig.FileName))
            ? ConfigAgreement.Check(family, HuggingFaceConfig.Read(folder), config)
            : ConfigAgreement.Assumed(family, config);
        Dictionary<string, Tensor> stateDict = StateDictFile.Read(path);
        try
        {
            WeightLoadReport report = family.Mapping(model, architecture: "").Apply(model, stateDict, family.Name);
            notes.AddRange(ConfigAgreement.DtypeNotes(stateDict.Values));
            return report with { Notes = [.. report.Notes, .. notes] };
        }
        finally
        {
            foreach (Tensor t in stateDict.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Loads a state dict in Hugging Face's names (read by you, e.g. with TorchSharp.PyBridge) into <paramref name="model"/>.
    /// A BERT model's head or pooler that the checkpoint lacks stays as initialised and is listed in
    /// <see cref="WeightLoadReport.Initialized"/>; heads the model lacks are listed as unused.
    /// </summary>
    public static WeightLoadReport LoadWeights(nn.Module model, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stateDict);
        ModelFamily family = ModelFamilies.Of(model);
        family.RequireLoadable(model);
        return family.Mapping(model, architecture: "").Apply(model, stateDict, family.Name);
    }

    /// <summary>
    /// Writes <paramref name="model"/> as a Hugging Face pretrained folder: <c>config.json</c> and
    /// <c>model.safetensors</c> (or shards with an index), in Hugging Face names and layouts, tied weights written once.
    /// Files are written under temporary names and renamed into place; weight files of an earlier save that the new
    /// one replaces are removed, and nothing else in the folder is touched.
    /// </summary>
    /// <exception cref="NotSupportedException">The model's configuration has no Hugging Face equivalent (the message names the setting); nothing is written.</exception>
    public static void Save(IModuleModel<TokenBatch> model, string folder, PretrainedSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new PretrainedSaveOptions();
        options.Validate();
        PretrainedWriter.Write(model.Module, folder, options);
    }
}
