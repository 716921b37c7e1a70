using System.Globalization;
using System.Text;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Onnx;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Transformers;
using Microsoft.ML.OnnxRuntime;
using Spectre.Console;
using static TorchSharp.torch;

namespace DistilMiniLM;

/// <summary>
/// The students out: each exported to ONNX with Hugging Face's input names (input_ids, attention_mask,
/// token_type_ids → last_hidden_state) and checked in ONNX Runtime against TorchSharp, written as a Hugging Face folder
/// with the teacher's vocab.txt and tokenizer_config.json, and timed against the teacher in ONNX Runtime.
/// </summary>
internal sealed class Deployment(string output, SessionOptions session, TextTable table, int[] heldOut, int speedTexts)
{
    private sealed record Entry(string Name, long Parameters, long FileBytes, double Batch1, double Batch32, double? ExportError, string? Folder);

    private readonly Dictionary<string, Entry> _entries = [];

    private int[] SpeedRows => [.. heldOut.Take(speedTexts)];

    public void Teacher(string modelPath, BertModel imported)
    {
        (double one, double many) = Time(modelPath);
        _entries["teacher"] = new Entry("all-MiniLM-L6-v2 (teacher)", ModelSize.Of(imported).Parameters, new FileInfo(modelPath).Length, one, many, null, null);
    }

    public void Student(string key, string name, SentenceEncoder student, string teacherFolder)
    {
        string onnx = Path.Combine(output, $"student-{key.ToLowerInvariant()}.onnx");
        OnnxExport.Export(student.Encoder, onnx, options: new OnnxExportOptions { OutputName = "last_hidden_state" });
        double error = ExportError(student.Encoder, onnx);
        string folder = Path.Combine(output, $"student-{key.ToLowerInvariant()}");
        PretrainedFolder.Save(student.Encoder, folder, new PretrainedSaveOptions { CopyTokenizerFrom = teacherFolder });
        CheckReload(student.Encoder, folder);
        (double one, double many) = Time(onnx);
        _entries[key] = new Entry(name, ModelSize.Of(student.Encoder).Parameters, new FileInfo(onnx).Length, one, many, error, folder);
        AnsiConsole.MarkupLine($"{Markup.Escape(name)}: {Markup.Escape(onnx)} (ONNX Runtime vs TorchSharp {error:E1}) and {Markup.Escape(folder)}; {one:F0} texts/s at batch 1, {many:F0} at batch 32");
    }

    /// <summary>(batch 1, batch 32) texts/s of student <paramref name="key"/> over the teacher's.</summary>
    public (double Batch1, double Batch32) SpeedUp(string key)
    {
        Entry teacher = _entries["teacher"], student = _entries[key.Split(' ')[^1]];
        return (student.Batch1 / teacher.Batch1, student.Batch32 / teacher.Batch32);
    }

    private (double One, double Many) Time(string path) =>
        (Speed.TextsPerSecond(path, session, table, SpeedRows, 1), Speed.TextsPerSecond(path, session, table, SpeedRows, 32));

    /// <summary>Max |ONNX Runtime − TorchSharp| of the last hidden state over the real tokens of 32 held-out texts in one padded batch.</summary>
    private double ExportError(BertModel encoder, string path)
    {
        using var scope = NewDisposeScope();
        TokenBatch batch = table.Batch([.. heldOut.Take(32)]);
        encoder.eval();
        Tensor expected;
        using (no_grad()) expected = encoder.Run(batch, OutputRequest.LogitsOnly).Logits;
        using var onnx = new OnnxTeacher(path, new OnnxTeacherOptions { SessionOptions = session });
        using ModelOutput got = onnx.Run(batch, OutputRequest.LogitsOnly);
        Tensor real = batch.AttentionMask!.unsqueeze(-1).to(ScalarType.Float32);
        double error = ((got.Logits - expected) * real).abs().max().item<float>();
        if (error > 1e-4) throw new InvalidDataException($"{path}: ONNX Runtime differs from TorchSharp by {error:E2}.");
        return error;
    }

    /// <summary>The saved folder loads back (config.json + model.safetensors + tokenizer) into the same model.</summary>
    private void CheckReload(BertModel encoder, string folder)
    {
        using var scope = NewDisposeScope();
        PretrainedModel<IModuleModel<TokenBatch>> loaded = PretrainedFolder.Load(folder);
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(folder);
        if (tokenizer.VocabularySize != 30522) throw new InvalidDataException($"{folder}: the saved tokenizer has {tokenizer.VocabularySize} entries.");
        TokenBatch batch = table.Batch([.. heldOut.Take(8)]);
        using var noGrad = no_grad();
        encoder.eval();
        ((TorchSharp.torch.nn.Module)loaded.Model.Module).eval();
        double difference = (loaded.Model.Run(batch, OutputRequest.LogitsOnly).Logits - encoder.Run(batch, OutputRequest.LogitsOnly).Logits).abs().max().item<float>();
        ((IDisposable)loaded.Model.Module).Dispose();
        if (difference != 0) throw new InvalidDataException($"{folder}: the reloaded model differs by {difference:E2}.");
    }

    public string Markdown()
    {
        var s = new StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture, $"ONNX Runtime, {session.IntraOpNumThreads} thread(s), the same {SpeedRows.Length} held-out texts for every model (≤ {table.MaxTokens} tokens; tokenization excluded):");
        s.AppendLine();
        s.AppendLine("| model | parameters | ONNX file | texts/s, batch 1 | texts/s, batch 32 | ONNX Runtime vs TorchSharp |");
        s.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (Entry e in _entries.Values)
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"| {e.Name} | {e.Parameters:N0} | {e.FileBytes / 1e6:F1} MB | {e.Batch1:F0} | {e.Batch32:F0} | {(e.ExportError is double d ? d.ToString("E1", CultureInfo.InvariantCulture) : "—")} |");
        }
        s.AppendLine();
        s.AppendLine("Saved Hugging Face folders (config.json, model.safetensors, vocab.txt, tokenizer_config.json): " + string.Join(", ", _entries.Values.Where(e => e.Folder is not null).Select(e => e.Folder)));
        return s.ToString();
    }
}
