using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Samples.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace FashionMnist;

/// <summary>Batches carry the images, their row numbers in the training set and the augmented view they come from, so the cached teacher can find its logits.</summary>
internal sealed record Images(Tensor Pixels, Tensor Rows, int View);

internal static class Networks
{
    public static nn.Module<Tensor, Tensor> Cnn() => nn.Sequential(
        nn.Conv2d(1, 32, 3, padding: 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding: 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10));

    public static nn.Module<Tensor, Tensor> Mlp(int hidden) => nn.Sequential(
        nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10));

    public static IModuleModel<Images> Student(nn.Module<Tensor, Tensor> model) =>
        DistillationModel.FromDelegate<nn.Module<Tensor, Tensor>, Images>(model, (m, batch, _) => new ModelOutput(m.call(batch.Pixels)));

    public static void Fit(string name, IReadOnlyList<IDistillationModel<Images>> teachers, nn.Module<Tensor, Tensor> model, DistillationObjective objective,
        Tensor x, Tensor y, Augmentation augmentation, int epochs, LearningRateDecay decay, Device device, int seed)
    {
        long count = x.shape[0];
        const int batch = 128;
        IEnumerable<DistillationBatch<Images>> Epoch(int epoch)
        {
            int view = epoch % augmentation.Views;
            Tensor order = randperm(count);
            for (long start = 0; start < count; start += batch)
            {
                Tensor rows = order[TensorIndex.Slice(start, Math.Min(count, start + batch))];
                // Images is the sample's own batch type, which the trainer does not move: its pixels go to the device here.
                yield return new DistillationBatch<Images>(new Images(augmentation.Apply(x, view, rows).to(device), rows, view), y.index_select(0, rows)) { DisposeAfterUse = true };
            }
        }
        var options = new DistillationTrainerOptions
        {
            Epochs = epochs, LearningRate = 1e-3, Decay = decay, WeightDecay = 0, MaxGradientNorm = null, Device = device.ToString(), Seed = seed,
            LoggingInterval = 50,
        };
        var trainer = new DistillationTrainer<Images>(teachers, Student(model), objective, options);
        long steps = epochs * ((count + batch - 1) / batch);
        TrainingProgressBar.Show(name, steps, progress => trainer.Train(Epoch, progress: progress));
    }

    public static Tensor Logits(nn.Module<Tensor, Tensor> model, Tensor x)
    {
        model.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        Device device = SampleDevice.Of(model);
        for (long start = 0; start < x.shape[0]; start += 1000) parts.Add(model.call(x[TensorIndex.Slice(start, start + 1000)].to(device)).cpu());
        return cat(parts, 0).MoveToOuterDisposeScope();
    }

    public static int TestErrors(nn.Module<Tensor, Tensor> model, FashionMnistData data)
    {
        using var scope = NewDisposeScope();
        return (int)Logits(model, data.TestImages).argmax(-1).ne(data.TestLabels).sum().item<long>();
    }
}
