using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Tests.Readme;

/// <summary>The example of docs/pretrained.md, compiled and run by <see cref="ReadmeSnippetTests"/>.</summary>
internal static class PretrainedExample
{
    public static PretrainedModel<LlamaModel> Run(string teacherFolder, string studentFolder, IReadOnlyList<string> texts, int steps)
    {
        // snippet-begin
        // In: a Hugging Face folder (config.json, safetensors single or sharded, or pytorch_model.bin) and its tokenizer.
        LlamaModel teacher = PretrainedFolder.Load<LlamaModel>(teacherFolder).Model;
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(teacherFolder);

        // A student with half the teacher's layers, initialised from them (the DistilGPT2 recipe).
        LlamaModel student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = teacher.Config.Layers / 2 }).Model;

        var batcher = new TextBatcher(tokenizer, maxLength: 128);
        var trainer = new DistillationTrainer<TokenBatch>([teacher], student,
            DistillationObjective.Create().SoftTargets(weight: 1.0, temperature: 1.0).Build(),
            new DistillationTrainerOptions { MaxSteps = steps, LearningRate = 5e-4 });
        trainer.Train(texts.Chunk(8).Select(chunk => batcher.CausalLanguageModeling(chunk)).ToList());

        // Out: the same format, with the teacher's tokenizer beside it, for transformers, converters and serving stacks.
        PretrainedFolder.Save(student, studentFolder, new PretrainedSaveOptions { CopyTokenizerFrom = teacherFolder });
        PretrainedModel<LlamaModel> reloaded = PretrainedFolder.Load<LlamaModel>(studentFolder);
        // snippet-end
        return reloaded;
    }
}
