using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>
/// docs/onnx.md's "Your teacher is an ONNX file" code, compiled and run on the real all-MiniLM-L6-v2. The lines
/// between the snippet markers are compared with the guide's code block, so the two cannot drift apart.
/// </summary>
internal static class OnnxTeacherGuideExample
{
    public static (IReadOnlyList<int> Ids, OnnxImportedModel<BertModel> Imported, Student<BertModel> Student) Run(string folder, string text, string output)
    {
        // snippet-begin
        // 1. The tokenizer: the folder's vocab.txt (+ tokenizer_config.json), ids equal to Hugging Face's tokenizers library.
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(folder);
        IReadOnlyList<int> ids = tokenizer.Encode(text, maxLength: 128);          // [CLS] … [SEP], cut to 128, [SEP] kept

        // 2. The teacher in ONNX Runtime: token inputs by name, the last hidden state mean-pooled and L2-normalised.
        using var teacher = new OnnxTeacher(Path.Combine(folder, "model.onnx"), new OnnxTeacherOptions
        {
            LogitsOutput = "last_hidden_state", Pooling = SequencePooling.Mean, Normalize = true, MaxSequenceLength = 512,
        });
        // Label the transfer set once: teacher.Run(tokenBatch, OutputRequest.LogitsOnly) → TeacherCacheWriter.ForValues(...).

        // 3. The same file as a trainable BertModel, and a student made of its layers.
        OnnxImportedModel<BertModel> imported = OnnxImport.Bert(Path.Combine(folder, "model.onnx"));
        Console.WriteLine(string.Join("\n", imported.Report.Notes));           // what was read from the graph, vocab check
        Student<BertModel> student = StudentFactory.FromTeacher(imported.Model,
            new StudentOptions { Layers = 3, Selection = LayerSelection.EveryOther, UsePooler = false });

        // 4. Train (CachedTeacher serves the cached embeddings by example index), then ship both ways.
        OnnxExport.Export(student.Model, Path.Combine(output, "student.onnx"), options: new OnnxExportOptions { OutputName = "last_hidden_state" });
        PretrainedFolder.Save(student.Model, Path.Combine(output, "student"), new PretrainedSaveOptions { CopyTokenizerFrom = folder });
        // snippet-end
        return (ids, imported, student);
    }
}
