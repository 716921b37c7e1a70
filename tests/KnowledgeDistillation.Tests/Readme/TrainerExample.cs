using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Readme;

/// <summary>The complete example of docs/trainer.md, compiled and run by <see cref="ReadmeSnippetTests"/>.</summary>
internal static class TrainerExample
{
    public static TrainingResult Run(nn.Module<Tensor, Tensor> teacher, nn.Module<Tensor, Tensor> student,
        List<DistillationBatch<Tensor>> train, List<DistillationBatch<Tensor>> validation, string checkpoints, ILogger logger)
    {
        // snippet-begin
        var objective = DistillationObjective.Create()
            .SoftTargets(weight: 0.9, temperature: 4.0)   // T² · KL(teacher ‖ student) at T = 4
            .HardTargets(weight: 0.1)                     // cross-entropy against the labels
            .Build();

        var options = new DistillationTrainerOptions
        {
            Epochs = 3,
            LearningRate = 1e-3,
            WarmupSteps = 10,
            Decay = LearningRateDecay.Cosine,
            GradientAccumulationSteps = 2,
            Device = "auto",                              // CUDA when the backend package provides it
            EvaluationInterval = 20,
            CheckpointDirectory = checkpoints,
            CheckpointInterval = 20,
        };

        var trainer = new DistillationTrainer<Tensor>(
            DistillationModel.FromLogits(teacher),        // any Module<Tensor, Tensor> from inputs to logits
            DistillationModel.FromLogits(student),
            objective, options, logger);

        TrainingResult result = trainer.Train(train, validation, callbacks: [new EarlyStoppingCallback(patience: 3)]);
        logger.LogInformation("student {Metric} {Value:0.###}, {Retention:P1} of the teacher's",
            result.LastEvaluation!.MetricName, result.LastEvaluation.StudentMetric, result.LastEvaluation.Retention);
        // snippet-end
        return result;
    }
}
