using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Readme;

/// <summary>The teacher-cache example of docs/trainer.md, compiled and run by <see cref="ReadmeSnippetTests"/>.</summary>
internal static class TeacherCacheExample
{
    public static TrainingResult Run(GptModel teacher, GptModel student, List<DistillationBatch<TokenBatch>> training, string cachePath)
    {
        // snippet-begin
        // Once: run the teacher over the fixed training set, in example order, into a top-32 cache at T = 2.
        using (var writer = new TeacherCacheWriter(cachePath, topK: 32, temperature: 2.0))
        using (no_grad())
        {
            teacher.eval();
            foreach (var batch in training) // batch.Inputs.ExampleIndices numbers the sequences 0, 1, 2, ...
            {
                using var scope = NewDisposeScope();
                writer.Append(teacher.call(batch.Inputs.InputIds));
            }
            writer.Complete();
        }

        // Every epoch after that: the cache stands in for the teacher, which no longer runs.
        using var cache = TeacherCache.Open(cachePath);
        var cachedTeacher = new CachedTeacher<TokenBatch>(cache, batch => batch.ExampleIndices!);
        var objective = DistillationObjective.Create()
            .SoftTargets(weight: 0.5, temperature: 2.0)   // the cache's temperature
            .HardTargets(weight: 0.5)
            .Build();
        var trainer = new DistillationTrainer<TokenBatch>(cachedTeacher, student, objective, new DistillationTrainerOptions { Epochs = 4, LearningRate = 1e-3 });
        return trainer.Train(training);
        // snippet-end
    }
}
