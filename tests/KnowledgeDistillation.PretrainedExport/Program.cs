// Saves students of every pretrained fixture with PretrainedFolder.Save, and beside each the outputs this library computes
// for the fixture's inputs. tests/pretrained-reference/check_saved.py then loads each folder with its plain-PyTorch
// re-implementation of the Hugging Face architecture and compares (.ci/run runs both).
//
//   dotnet run --project tests/KnowledgeDistillation.PretrainedExport -- <fixtures folder> <output folder>
using KnowledgeDistillation.Formats;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: KnowledgeDistillation.PretrainedExport <fixtures folder> <output folder>");
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
    IModuleModel<TokenBatch> teacher = PretrainedFolder.Load(source).Model;
    var studentOptions = new StudentOptions { Layers = 1, Selection = LayerSelection.LastK };
    IModuleModel<TokenBatch> student = teacher switch
    {
        GptModel g => StudentFactory.FromTeacher(g, studentOptions).Model,
        BertModel b => StudentFactory.FromTeacher(b, studentOptions).Model,
        LlamaModel l => StudentFactory.FromTeacher(l, studentOptions).Model,
        _ => throw new InvalidOperationException(),
    };
    // Move the student off its teacher-copied weights so that a mapping error cannot hide behind identical layers.
    using (no_grad())
    {
        manual_seed(7);
        foreach (var p in student.Module.parameters()) p.add_(randn_like(p) * 0.01);
    }
    student.Module.eval();
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
return 0;

static TModel Copy<TModel>(nn.Module from, TModel to) where TModel : nn.Module
{
    using (no_grad())
    {
        foreach ((string name, Tensor value) in from.state_dict()) to.state_dict()[name].copy_(value);
    }
    to.eval();
    return to;
}
