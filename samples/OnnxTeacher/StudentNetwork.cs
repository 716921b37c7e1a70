using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Samples.Shared;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace OnnxTeacherSample;

/// <summary>A batch of images with their rows in the teacher cache.</summary>
internal sealed record Images(Tensor Pixels, Tensor Rows);

/// <summary>The student: a four-layer CNN on 28×28 images whose last layer maps its 256 pooled channels to a 512-d embedding.</summary>
internal static class StudentNetwork
{
    public static Sequential Create() => nn.Sequential(
        ("conv1", nn.Conv2d(1, 32, 3, padding: 1)), ("norm1", nn.BatchNorm2d(32)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(32, 64, 3, padding: 1)), ("norm2", nn.BatchNorm2d(64)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(64, 128, 3, padding: 1)), ("norm3", nn.BatchNorm2d(128)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(128, 256, 3, padding: 1)), ("norm4", nn.BatchNorm2d(256)), ("relu4", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("embedding", nn.Linear(256, 512)));

    /// <summary>Label-free feature distillation: 1 − cos(student(x), teacher(x)) on the transfer images, the teacher's embeddings read from its cache.</summary>
    public static void Distill(Sequential student, TeacherCache cache, Tensor images, int epochs, int seed)
    {
        var cosine = new KnowledgeDistillation.Losses.CosineEmbeddingLoss();
        DistillationObjective objective = DistillationObjective.Create()
            .Term("cosine", 1.0, context => cosine.forward(context.Student.Logits, context.Teacher.Logits))
            .Build();
        var teacher = new CachedTeacher<Images>(cache, batch => batch.Rows);
        Train($"distil (seed {seed})", [teacher], student, objective, images, labels: null, epochs, seed);
    }

    /// <summary>The same CNN with a linear classifier on its embedding, trained with cross-entropy on the labelled images alone.</summary>
    public static void TrainOnLabels(Sequential student, Tensor images, Tensor labels, int epochs, int seed)
    {
        var classifier = nn.Sequential(("features", student), ("classifier", nn.Linear(512, 10)));
        Train($"labels, {epochs} epochs (seed {seed})", [], classifier, DistillationObjective.Create().HardTargets(1.0).Build(), images, labels, epochs, seed);
    }

    private static void Train(string name, IReadOnlyList<IDistillationModel<Images>> teachers, nn.Module<Tensor, Tensor> model, DistillationObjective objective,
        Tensor images, Tensor? labels, int epochs, int seed)
    {
        const int batch = 128;
        long count = images.shape[0];
        IEnumerable<DistillationBatch<Images>> Epoch(int epoch)
        {
            Tensor order = randperm(count);
            for (long start = 0; start < count; start += batch)
            {
                Tensor rows = order[TensorIndex.Slice(start, Math.Min(count, start + batch))];
                yield return new DistillationBatch<Images>(new Images(images.index_select(0, rows), rows), labels?.index_select(0, rows)) { DisposeAfterUse = true };
            }
        }
        var options = new DistillationTrainerOptions
        {
            Epochs = epochs, LearningRate = 2e-3, Decay = LearningRateDecay.Cosine, WeightDecay = 0, MaxGradientNorm = null, Device = "cpu", Seed = seed, LoggingInterval = 50,
        };
        IModuleModel<Images> student = DistillationModel.FromDelegate<nn.Module<Tensor, Tensor>, Images>(model, (m, b, _) => new ModelOutput(m.call(b.Pixels)));
        var trainer = new DistillationTrainer<Images>(teachers, student, objective, options);
        TrainingProgressBar.Show(name, epochs * ((count + batch - 1) / batch), progress => trainer.Train(Epoch, progress: progress));
    }

    /// <summary>The student's embeddings <c>[N, 512]</c> in evaluation mode.</summary>
    public static Tensor Embed(nn.Module<Tensor, Tensor> student, Tensor images)
    {
        student.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        for (long start = 0; start < images.shape[0]; start += 1000) parts.Add(student.call(images[TensorIndex.Slice(start, start + 1000)]));
        return cat(parts, 0).MoveToOuterDisposeScope();
    }
}
