using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace DistilMiniLM;

/// <summary>
/// Texts per second of a BERT-style ONNX model in ONNX Runtime: the same tokenized texts for every model, inputs built
/// before the clock starts (tokenization and pooling excluded), two warm-up calls, then every batch once. Batches of
/// more than one text are formed from texts of similar length, as a serving queue would.
/// </summary>
internal static class Speed
{
    public static double TextsPerSecond(string modelPath, SessionOptions options, TextTable table, int[] rows, int batch)
    {
        using var session = new InferenceSession(modelPath, options);
        string[] inputs = [.. session.InputMetadata.Keys];
        IEnumerable<int[]> chunks = batch == 1 ? rows.Select(r => new[] { r }) : table.ByLength(rows, batch);
        List<NamedOnnxValue[]> feeds = [.. chunks.Select(chunk => Feed(table, chunk, inputs))];
        for (int i = 0; i < Math.Min(2, feeds.Count); i++) session.Run(feeds[i]).Dispose();
        var clock = Stopwatch.StartNew();
        foreach (NamedOnnxValue[] feed in feeds) session.Run(feed).Dispose();
        return rows.Length / clock.Elapsed.TotalSeconds;
    }

    private static NamedOnnxValue[] Feed(TextTable table, int[] chunk, string[] inputs)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        KnowledgeDistillation.Models.TokenBatch b = table.Batch(chunk);
        int[] shape = [.. b.InputIds.shape.Select(d => (int)d)];
        long[] ids = b.InputIds.data<long>().ToArray(), mask = b.AttentionMask!.data<long>().ToArray();
        return [.. inputs.Select(name => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(name switch
        {
            "input_ids" => ids,
            "attention_mask" => mask,
            "token_type_ids" => new long[ids.Length],
            _ => throw new InvalidDataException($"{name}: not a BERT input."),
        }, shape)))];
    }
}
