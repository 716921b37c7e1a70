using KnowledgeDistillation.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CnnMethods;

/// <summary>A batch: the images and their rows in the training set (for the teacher cache and CRD's memory bank).</summary>
internal sealed record Images(Tensor Pixels, Tensor Rows);

/// <summary>The teacher and student CNNs, and the positions of the features the feature methods read.</summary>
internal static class Networks
{
    /// <summary>The FashionMnist sample's teacher: conv32-pool-conv64-pool-fc256-fc10.</summary>
    public static Sequential Teacher() => nn.Sequential(
        ("conv1", nn.Conv2d(1, 32, 3, padding: 1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(32, 64, 3, padding: 1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(64 * 7 * 7, 256)), ("relu3", nn.ReLU()), ("dropout", nn.Dropout(0.3)), ("head", nn.Linear(256, 10)));

    /// <summary>The student: conv8-pool-conv16-pool-fc32-fc10, the same layout at a quarter (convolutions) and an eighth (dense) of the width.</summary>
    public static Sequential Student() => nn.Sequential(
        ("conv1", nn.Conv2d(1, 8, 3, padding: 1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, 3, padding: 1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(16 * 7 * 7, 32)), ("relu3", nn.ReLU()), ("head", nn.Linear(32, 10)));

    /// <summary>Captured features, in this order: the two pooled maps (<c>[N, C, 14, 14]</c>, <c>[N, C, 7, 7]</c>) and the penultimate embedding.</summary>
    public static readonly string[] Features = ["pool1", "pool2", "relu3"];

    public const int TeacherEmbedding = 256, StudentEmbedding = 32, TeacherChannels = 64, StudentChannels = 16;

    /// <summary>A model over <see cref="Images"/> whose captured features are its hidden states (disposable: it removes its hooks).</summary>
    public static IModuleModel<Images> WithFeatures(Sequential network) => new FeatureModel(DistillationModel.WithCapturedHiddenStates(network, Features));

    /// <summary>Dispose it to remove the capture hooks from the network.</summary>
    private sealed class FeatureModel(CapturingModel inner) : IModuleModel<Images>, IDisposable
    {
        public void Dispose() => inner.Dispose();

        public nn.Module Module => inner.Module;

        public ModelOutputKinds Provides => inner.Provides;

        public ModelOutput Run(Images input, OutputRequest request) => inner.Run(input.Pixels, request);
    }

    /// <summary>Test errors out of the test images, in evaluation mode.</summary>
    public static int TestErrors(nn.Module<Tensor, Tensor> model, Tensor images, Tensor labels)
    {
        model.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long errors = 0;
        for (long start = 0; start < images.shape[0]; start += 1000)
        {
            var range = TensorIndex.Slice(start, Math.Min(images.shape[0], start + 1000));
            errors += model.call(images[range]).argmax(-1).ne(labels[range]).sum().item<long>();
        }
        return (int)errors;
    }
}
