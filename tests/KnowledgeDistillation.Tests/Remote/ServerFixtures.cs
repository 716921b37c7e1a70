using KnowledgeDistillation.Models;
using KnowledgeDistillation.Serving;
using KnowledgeDistillation.Transformers;
using Microsoft.AspNetCore.Builder;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Remote;

/// <summary>A teacher server on a loopback port of this process (real Kestrel, real HTTP).</summary>
internal sealed class RunningServer : IAsyncDisposable
{
    private RunningServer(WebApplication app, Uri url)
    {
        App = app;
        Url = url;
    }

    public WebApplication App { get; }

    public Uri Url { get; }

    /// <summary>Starts a server on <paramref name="port"/> (0: any free port).</summary>
    public static RunningServer Start(IDistillationModel<TokenBatch> teacher, TeacherServerOptions options, int port = 0)
    {
        WebApplication app = TeacherServer.Create(teacher, options, $"http://127.0.0.1:{port}");
        app.StartAsync().GetAwaiter().GetResult();
        return new RunningServer(app, new Uri(app.Urls.Single().TrimEnd('/') + "/"));
    }

    public void Stop() => App.StopAsync().GetAwaiter().GetResult();

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

internal static class ServerFixtures
{
    public const int Vocabulary = 40, Length = 12;

    public static GptModel Teacher(int seed)
    {
        manual_seed(seed);
        var model = new GptModel(new GptConfig { VocabSize = Vocabulary, ContextLength = 16, Width = 16, Heads = 2, Layers = 1, Dropout = 0 });
        model.eval();
        return model;
    }

    public static GptModel Student(int seed)
    {
        manual_seed(seed);
        return new GptModel(new GptConfig { VocabSize = Vocabulary, ContextLength = 16, Width = 8, Heads = 2, Layers = 1, Dropout = 0 });
    }

    /// <summary>Token batches that know their examples' cache indices, with next-token labels.</summary>
    public static List<DistillationBatch<TokenBatch>> Batches(int count, int size = 4)
    {
        var random = new Random(31);
        var batches = new List<DistillationBatch<TokenBatch>>();
        for (int b = 0; b < count; b++)
        {
            long[] ids = Enumerable.Range(0, size * (Length + 1)).Select(_ => (long)random.Next(Vocabulary)).ToArray();
            Tensor all = tensor(ids).reshape(size, Length + 1);
            batches.Add(new DistillationBatch<TokenBatch>(
                new TokenBatch(all[.., ..Length].contiguous(), ExampleIndices: arange(b * (long)size, (b + 1) * (long)size)), all[.., 1..].contiguous()));
        }
        return batches;
    }

    public static TeacherServerOptions Options(int topK = 5, double temperature = 2.0, string? key = null) =>
        new() { TopK = topK, Temperature = temperature, VocabularySize = Vocabulary, ApiKey = key, ModelName = "tiny-gpt" };

    public static float[] Weights(GptModel model) => model.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
}
