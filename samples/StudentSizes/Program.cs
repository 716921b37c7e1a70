// Builds BERT-base-shaped teacher and the DistilBERT- and TinyBERT-4-shaped students from it with
// KnowledgeDistillation.Students, and prints their compression reports: parameters, weight bytes in float32 and
// bfloat16, and median forward latency on one batch of 8 x 128 tokens. Weights are random (no download is possible
// here); sizes and speed do not depend on them. Numbers in docs/students.md come from this program.
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

try
{
    var teacherConfig = new BertConfig { VocabSize = 30522, ContextLength = 512, Width = 768, Heads = 12, Layers = 12, FeedForwardWidth = 3072 };
    manual_seed(0);
    var teacher = new BertModel(teacherConfig);
    Tensor ids = randint(0, teacherConfig.VocabSize, [8, 128]);
    void Forward(nn.Module model) => ((BertModel)model).call(ids);

    Student<BertModel> distil = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 6, UsePooler = false });
    Console.WriteLine($"DistilBERT-shaped student: 12 -> 6 layers (teacher layers {string.Join(", ", distil.Transfer.TeacherLayers)}), pooler removed; " +
                      $"copied {distil.Transfer.Copied.Count} tensors, skipped {distil.Transfer.Skipped.Count}");
    Console.WriteLine(CompressionReport.Compare(teacher, distil.Model, Forward, runs: 5, warmup: 1));

    Student<BertModel> tiny = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 4, Width = 312, Heads = 12, FeedForwardWidth = 1200 });
    Console.WriteLine($"TinyBERT-4-shaped student: 12 -> 4 layers, width 768 -> 312; copied {tiny.Transfer.Copied.Count} tensors, " +
                      $"skipped {tiny.Transfer.Skipped.Count} (a narrower student is trained by distillation, not copied)");
    Console.WriteLine(CompressionReport.Compare(teacher, tiny.Model, Forward, runs: 5, warmup: 1));
    return 0;
}
catch (Exception e)
{
    Console.Error.WriteLine("StudentSizes failed: " + e.Message);
    return 1;
}
