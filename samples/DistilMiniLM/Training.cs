using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Samples.Shared;
using static TorchSharp.torch;

namespace DistilMiniLM;

/// <summary>
/// How a student is distilled: learning rate and loss (chosen on the validation split by <c>--sweep</c>; see the
/// README), passes over the transfer set (set by the time budget), batch size.
/// </summary>
internal sealed record Recipe(double LearningRate, string Loss, int Epochs, int BatchSize = 32)
{
    public override string ToString() => $"lr {LearningRate:G2}, {Loss}, {Epochs} epoch(s)";
}

/// <summary>The two trainings of the experiment, both through the library's <see cref="DistillationTrainer{TInput}"/>.</summary>
internal static class Training
{
    /// <summary>
    /// Label-free distillation: the student's pooled (and, when narrower, projected) embedding of each transfer text is
    /// pulled towards the teacher's, read from the values cache by example index. Loss: 1 − cos, or the MSE of the two
    /// embeddings (the teacher's are unit vectors).
    /// </summary>
    public static void Distill(SentenceEncoder student, TeacherCache cache, TextTable table, int[] transfer, int epochs, Recipe recipe, int seed, string name)
    {
        var cosine = new CosineEmbeddingLoss();
        DistillationObjective objective = DistillationObjective.Create()
            .Term(recipe.Loss, 1.0, context => recipe.Loss == "mse"
                ? (context.Student.Logits - context.Teacher.Logits).square().sum(-1).mean()
                : cosine.forward(context.Student.Logits, context.Teacher.Logits))
            .Build();
        var teacher = new CachedTeacher<TokenBatch>(cache, batch => batch.ExampleIndices!);
        Train(name, [teacher], student, objective, table, transfer, labels: null, epochs, recipe.LearningRate, recipe.BatchSize, seed);
    }

    /// <summary>The labels-only control: the encoder with a linear classifier, cross-entropy on the task's label budget.</summary>
    public static void TrainOnLabels(SentenceEncoder student, TextTable table, LabelledTask task, int epochs, double learningRate, int seed, string name)
    {
        manual_seed(7000 + seed);
        // Not disposed here: disposing the classifier would dispose the student it wraps.
        var classifier = new SentenceClassifier(student, 2);
        Train(name, [], classifier, DistillationObjective.Create().HardTargets(1.0).Build(), table, task.Train, task.TrainLabels, epochs, learningRate, 32, seed);
    }

    private static void Train(string name, IReadOnlyList<IDistillationModel<TokenBatch>> teachers, nn.Module<TokenBatch, Tensor> model, DistillationObjective objective,
        TextTable table, int[] rows, int[]? labels, int epochs, double learningRate, int batchSize, int seed)
    {
        Dictionary<int, int>? labelOf = labels is null ? null : rows.Zip(labels).ToDictionary(p => p.First, p => p.Second);
        IEnumerable<DistillationBatch<TokenBatch>> Epoch(int epoch)
        {
            // Shuffled, then sorted by length within windows of 50 batches: little padding, batches still random.
            var random = new Random(seed * 1000 + epoch);
            int[] order = [.. rows.OrderBy(_ => random.Next())];
            var batches = order.Chunk(batchSize * 50).SelectMany(window => table.ByLength(window, batchSize)).OrderBy(_ => random.Next()).ToList();
            foreach (int[] batch in batches)
            {
                Tensor? y = labelOf is null ? null : tensor(batch.Select(i => (long)labelOf[i]).ToArray());
                yield return new DistillationBatch<TokenBatch>(table.Batch(batch), y) { DisposeAfterUse = true };
            }
        }
        var options = new DistillationTrainerOptions
        {
            Epochs = epochs, LearningRate = learningRate, Decay = LearningRateDecay.Linear, WarmupSteps = Math.Max(1, rows.Length / batchSize / 10),
            WeightDecay = 0.01, MaxGradientNorm = 1.0, Device = "cpu", Seed = seed, LoggingInterval = 50,
        };
        IModuleModel<TokenBatch> student = DistillationModel.FromDelegate<nn.Module<TokenBatch, Tensor>, TokenBatch>(model, (m, b, _) => new ModelOutput(m.call(b)));
        using var trainer = new DistillationTrainer<TokenBatch>(teachers, student, objective, options);
        long steps = epochs * (long)Math.Ceiling(rows.Length / (double)batchSize);
        TrainingProgressBar.Show(name, steps, progress => trainer.Train(Epoch, progress: progress));
    }
}
