// kd-teacher-server: the ready host of KnowledgeDistillation.Serving. Serves a Hugging Face folder (GPT-2, BERT,
// Llama, Qwen2, Mistral) or an ONNX file as a teacher: top-k probabilities (or values) for batches of token ids.
//   dotnet run --project samples/TeacherServer -c Release -- --model path/to/folder --top-k 64 --temperature 2 --urls http://0.0.0.0:8080
// The API key, when wanted, comes from the environment variable named by --api-key-env (default KD_TEACHER_API_KEY).
using System.CommandLine;
using System.Security.Cryptography;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Onnx;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Serving;
using Microsoft.AspNetCore.Builder;
using static TorchSharp.torch;

var modelOption = new Option<string>("--model") { Description = "A Hugging Face folder (config.json and weights) or an .onnx file.", Required = true };
var vocabularyOption = new Option<long?>("--vocabulary-size") { Description = "Input vocabulary (read from config.json for a folder; required for ONNX)." };
var topKOption = new Option<int>("--top-k") { Description = "Classes sent per row.", DefaultValueFactory = _ => 64 };
var temperatureOption = new Option<double>("--temperature") { Description = "T of softmax(z / T).", DefaultValueFactory = _ => 1.0 };
var contentOption = new Option<string>("--content") { Description = "topk, float16 or float32 (values: pooled features or logits).", DefaultValueFactory = _ => "topk" };
var poolingOption = new Option<string>("--pooling") { Description = "ONNX only: none, mean or cls pooling of the sequence output.", DefaultValueFactory = _ => "none" };
var normalizeOption = new Option<bool>("--normalize") { Description = "ONNX only: divide the pooled output by its L2 norm (sentence-transformers' Normalize)." };
var urlsOption = new Option<string[]>("--urls") { Description = "Addresses to listen on.", DefaultValueFactory = _ => ["http://127.0.0.1:8080"], AllowMultipleArgumentsPerToken = true };
var keyOption = new Option<string>("--api-key-env") { Description = "Environment variable that holds the API key (none set: no key).", DefaultValueFactory = _ => "KD_TEACHER_API_KEY" };
var batchOption = new Option<int>("--max-batch-sequences") { Description = "Sequences per forward pass, from concurrent requests.", DefaultValueFactory = _ => 64 };
var windowOption = new Option<double>("--batch-window-ms") { Description = "How long a batch waits for more requests.", DefaultValueFactory = _ => 2.0 };
var lengthOption = new Option<int>("--max-sequence-length") { Description = "Tokens per sequence.", DefaultValueFactory = _ => 2048 };
var threadsOption = new Option<int?>("--threads") { Description = "TorchSharp CPU threads (default: TorchSharp's)." };
var root = new RootCommand("Serve a teacher's top-k probabilities (or values) over HTTP for KnowledgeDistillation.Remote.")
{
    modelOption, vocabularyOption, topKOption, temperatureOption, contentOption, poolingOption, normalizeOption, urlsOption, keyOption, batchOption, windowOption, lengthOption, threadsOption,
};
root.SetAction(async (parse, cancel) =>
{
    if (parse.GetValue(threadsOption) is { } threads) set_num_threads(threads);
    string model = parse.GetValue(modelOption)!;
    TeacherCacheContent content = parse.GetValue(contentOption)!.ToLowerInvariant() switch
    {
        "topk" => TeacherCacheContent.TopKProbabilities,
        "float16" => TeacherCacheContent.Float16Values,
        "float32" => TeacherCacheContent.Float32Values,
        var other => throw new ArgumentException($"--content must be topk, float16 or float32; got \"{other}\"."),
    };
    IDistillationModel<TokenBatch> teacher;
    long vocabulary;
    string? identity = null, name;
    if (File.Exists(model) && model.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
    {
        SequencePooling pooling = parse.GetValue(poolingOption)!.ToLowerInvariant() switch
        {
            "none" => SequencePooling.None,
            "mean" => SequencePooling.Mean,
            "cls" => SequencePooling.Cls,
            var other => throw new ArgumentException($"--pooling must be none, mean or cls; got \"{other}\"."),
        };
        teacher = new OnnxTeacher(model, new OnnxTeacherOptions { Pooling = pooling, Normalize = parse.GetValue(normalizeOption) });
        vocabulary = parse.GetValue(vocabularyOption) ?? throw new ArgumentException("--vocabulary-size is required for an ONNX teacher (its input ids must be checked against it).");
        // The pooling and normalisation change what is served, so they are part of the identity the fingerprint covers.
        using (FileStream file = File.OpenRead(model))
        {
            identity = $"onnx:{Convert.ToHexString(SHA256.HashData(file)).ToLowerInvariant()};pooling={pooling};normalize={parse.GetValue(normalizeOption)}";
        }
        name = Path.GetFileName(model);
    }
    else
    {
        var loaded = PretrainedFolder.Load(model);
        teacher = loaded.Model;
        vocabulary = parse.GetValue(vocabularyOption) ?? loaded.Source.Config.VocabSize;
        name = $"{loaded.Source.ModelType} ({Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(model)))})";
    }
    var options = new TeacherServerOptions
    {
        Content = content, TopK = parse.GetValue(topKOption), Temperature = parse.GetValue(temperatureOption), VocabularySize = vocabulary,
        MaxBatchSequences = parse.GetValue(batchOption), BatchWindow = TimeSpan.FromMilliseconds(parse.GetValue(windowOption)),
        MaxSequenceLength = parse.GetValue(lengthOption), ApiKey = Environment.GetEnvironmentVariable(parse.GetValue(keyOption)!) is { Length: > 0 } key ? key : null,
        ModelName = name, Identity = identity,
    };
    WebApplication app = TeacherServer.Create(teacher, options, parse.GetValue(urlsOption)!);
    await app.StartAsync(cancel);
    var served = app.Services.GetService(typeof(ServedTeacher)) as ServedTeacher;
    // One line a supervisor (or a test) can read: where it listens and what it serves.
    Console.WriteLine($"listening on {string.Join(" ", app.Urls)} serving {served!.Description.Model} {served.Description.Settings} fingerprint {served.Description.Fingerprint}");
    await app.WaitForShutdownAsync(cancel);
    return 0;
});
return await root.Parse(args).InvokeAsync();
