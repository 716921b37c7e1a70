using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Training;

namespace KnowledgeDistillation.Tests.Readme;

/// <summary>docs/tokenizers.md's cross-tokenizer example, compiled and run here; <see cref="ReadmeSnippetTests"/> compares the lines between the markers with the guide.</summary>
internal static class CrossTokenizerExample
{
    public static TrainingResult Run(HuggingFaceTokenizer studentTokenizer, HuggingFaceTokenizer teacherTokenizer, IReadOnlyList<string> texts,
        IModuleModel<TokenBatch> teacher, IModuleModel<TokenBatch> student, DistillationTrainerOptions options, bool hybrid)
    {
        // snippet-begin
        // Each side's tokens and the bytes each holds (TokenBytes() for a tokenizer.json tokenizer; FromTiktokenRanks for tiktoken; Bytes() for a byte model).
        TokenByteStrings studentBytes = studentTokenizer.TokenBytes(), teacherBytes = teacherTokenizer.TokenBytes();
        CrossTokenizedText Tokenize(string text)
        {
            int[] s = [.. studentTokenizer.Encode(text, addSpecialTokens: false).Ids], t = [.. teacherTokenizer.Encode(text, addSpecialTokens: false).Ids];
            return new CrossTokenizedText(s, s.Select(id => studentBytes[id]?.Length ?? 0).ToArray(), t, t.Select(id => teacherBytes[id]?.Length ?? 0).ToArray());
        }
        DistillationBatch<CrossTokenizerBatch> batch = CrossTokenizerBatch.Create(texts.Select(Tokenize).ToList(), studentPadding: 0, teacherPadding: 0);

        DistillationObjective objective = DistillationObjective.Create()
            .HardTargets(1.0)                                                         // the student's own next tokens
            .UniversalLogitDistillation(1.0)                                          // or:
            // .CrossTokenizerHybrid(1.0, VocabularyMatch.Between(studentBytes, teacherBytes))
            .Build();
        var trainer = new DistillationTrainer<CrossTokenizerBatch>(CrossTokenizerModels.Teacher(teacher), CrossTokenizerModels.Student(student), objective, options);
        // snippet-end
        if (hybrid)
        {
            objective = DistillationObjective.Create().HardTargets(1.0).CrossTokenizerHybrid(1.0, VocabularyMatch.Between(studentBytes, teacherBytes)).Build();
            trainer = new DistillationTrainer<CrossTokenizerBatch>(CrossTokenizerModels.Teacher(teacher), CrossTokenizerModels.Student(student), objective, options);
        }
        return trainer.Train([batch]);
    }
}
