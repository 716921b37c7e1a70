// Saves students of every pretrained fixture with PretrainedFolder.Save, and beside each the outputs this library computes
// for the fixture's inputs. tests/pretrained-reference/check_saved.py then loads each folder with its plain-PyTorch
// re-implementation of the Hugging Face architecture and compares (.ci/run runs both).
//
// With a third folder it also writes, per family, a base student, LoRA adapters on it in PEFT's layout, the merged
// student and the adapted student's logits; tests/pretrained-reference/check_peft.py applies the adapters in PyTorch.
//
//   dotnet run --project tests/KnowledgeDistillation.PretrainedExport -- <fixtures folder> <output folder> [<LoRA output folder>]
using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Formats;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

if (args.Length is not (2 or 3))
{
    Console.Error.WriteLine("usage: KnowledgeDistillation.PretrainedExport <fixtures folder> <output folder> [<LoRA output folder>]");
    return 2;
}
string fixtures = args[0], output = args[1];
Directory.CreateDirectory(output);
var variants = new (string Fixture, string Name, PretrainedSaveOptions Options)[]
{
    ("gpt2", "gpt2-student", new()),
    ("gpt2", "gpt2-student-sharded", new() { MaxShardBytes = 150_000 }),
    ("bert-classification", "bert-classification-student", new()),
    ("bert-masked-lm", "bert-masked-lm-student", new()),
    ("bert-pretraining", "bert-pretraining-student", new()),
    ("bert-encoder", "bert-encoder-student", new()),
    ("llama", "llama-student", new()),
    ("llama", "llama-student-bfloat16", new() { Dtype = ScalarType.BFloat16 }),
    ("qwen2", "qwen2-student", new()),
    ("mistral", "mistral-student", new() { MaxShardBytes = 200_000 }),
};

foreach ((string fixture, string name, PretrainedSaveOptions options) in variants)
{
    using var scope = NewDisposeScope();
    string source = Path.Combine(fixtures, fixture);
    IModuleModel<TokenBatch> student = Student(source);
    string folder = Path.Combine(output, name);
    PretrainedFolder.Save(student, folder, options with { CopyTokenizerFrom = source });

    // The saved weights, read back as the saved dtype, are what Python will use: compute with exactly those.
    IModuleModel<TokenBatch> reloaded = PretrainedFolder.Load(folder).Model;
    Dictionary<string, Tensor> expected = Safetensors.LoadStateDict(Path.Combine(source, "expected.safetensors"));
    var batch = new TokenBatch(expected["input_ids"], expected["attention_mask"], expected.GetValueOrDefault("token_type_ids"));
    IModuleModel<TokenBatch> withConvention = reloaded.Module switch
    {
        GptModel g => Copy(g, new GptModel(g.Config with { HiddenStates = HiddenStateConvention.HuggingFace })),
        LlamaModel l => Copy(l, new LlamaModel(l.Config with { HiddenStates = HiddenStateConvention.HuggingFace })),
        _ => reloaded,
    };
    ModelOutput output1;
    using (no_grad()) output1 = withConvention.Run(batch, new OutputRequest(HiddenStates: true, AttentionProbabilities: true));
    var computed = new Dictionary<string, Tensor>
    {
        ["input_ids"] = batch.InputIds, ["attention_mask"] = batch.AttentionMask!, ["logits"] = output1.Logits,
    };
    if (batch.TokenTypeIds is not null) computed["token_type_ids"] = batch.TokenTypeIds;
    for (int i = 0; i < output1.HiddenStates!.Count; i++) computed[$"hidden_states.{i}"] = output1.HiddenStates[i];
    for (int i = 0; i < output1.AttentionProbabilities!.Count; i++) computed[$"attentions.{i}"] = output1.AttentionProbabilities[i];
    SafetensorsFile.Write(Path.Combine(output, name + ".expected.safetensors"), computed);
    Console.WriteLine($"{name}: saved {string.Join(", ", Directory.GetFiles(folder).Select(Path.GetFileName).Order())}");
}
if (args.Length == 3) ExportLora(fixtures, args[2]);
return 0;

// Per family: the base student, LoRA on every attention and feed-forward projection (r = 4, α = 8, B moved off zero so
// the update is not zero), the adapter folder, the merged folder and the adapted student's logits on the fixture's inputs.
static void ExportLora(string fixtures, string output)
{
    Directory.CreateDirectory(output);
    foreach (string fixture in new[] { "gpt2", "bert-classification", "llama", "qwen2" })
    {
        using var scope = NewDisposeScope();
        string source = Path.Combine(fixtures, fixture), name = fixture + "-lora";
        IModuleModel<TokenBatch> student = Student(source);
        PretrainedFolder.Save(student, Path.Combine(output, name + "-base"), new PretrainedSaveOptions { CopyTokenizerFrom = source });
        LoraAdapters adapters = Lora.Apply(student.Module, new LoraOptions { Targets = [.. LoraTargets.For(student.Module)], Rank = 4, Alpha = 8 });
        using (no_grad())
        {
            manual_seed(8);
            foreach (LoraLayer layer in adapters.Layers) layer.B.weight!.copy_(randn_like(layer.B.weight!) * 0.05);
        }
        PeftAdapterFolder.Save(student.Module, Path.Combine(output, name + "-adapter"), baseModelNameOrPath: name + "-base");
        PretrainedFolder.Save(student, Path.Combine(output, name + "-merged"), new PretrainedSaveOptions { CopyTokenizerFrom = source });
        Dictionary<string, Tensor> expected = Safetensors.LoadStateDict(Path.Combine(source, "expected.safetensors"));
        var batch = new TokenBatch(expected["input_ids"], expected["attention_mask"], expected.GetValueOrDefault("token_type_ids"));
        Tensor logits;
        using (no_grad()) logits = student.Run(batch, OutputRequest.LogitsOnly).Logits;
        var computed = new Dictionary<string, Tensor> { ["input_ids"] = batch.InputIds, ["attention_mask"] = batch.AttentionMask!, ["logits"] = logits };
        if (batch.TokenTypeIds is not null) computed["token_type_ids"] = batch.TokenTypeIds;
        SafetensorsFile.Write(Path.Combine(output, name + ".expected.safetensors"), computed);
        Console.WriteLine($"{name}: {adapters.Layers.Count} adapted layers, {adapters.TrainableParameters:N0} adapter parameters");
    }
}

// A one-layer student of the fixture, moved off its teacher-copied weights so that a mapping error cannot hide behind
// identical layers.
static IModuleModel<TokenBatch> Student(string source)
{
    IModuleModel<TokenBatch> teacher = PretrainedFolder.Load(source).Model;
    var studentOptions = new StudentOptions { Layers = 1, Selection = LayerSelection.LastK };
    IModuleModel<TokenBatch> student = teacher switch
    {
        GptModel g => StudentFactory.FromTeacher(g, studentOptions).Model,
        BertModel b => StudentFactory.FromTeacher(b, studentOptions).Model,
        LlamaModel l => StudentFactory.FromTeacher(l, studentOptions).Model,
        _ => throw new InvalidOperationException(),
    };
    using (no_grad())
    {
        manual_seed(7);
        foreach (var p in student.Module.parameters()) p.add_(randn_like(p) * 0.01);
    }
    student.Module.eval();
    return student;
}

static TModel Copy<TModel>(nn.Module from, TModel to) where TModel : nn.Module
{
    using (no_grad())
    {
        foreach ((string name, Tensor value) in from.state_dict()) to.state_dict()[name].copy_(value);
    }
    to.eval();
    return to;
}
