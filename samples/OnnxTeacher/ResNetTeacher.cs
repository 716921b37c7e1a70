using KnowledgeDistillation.Models;
using KnowledgeDistillation.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Tensor = TorchSharp.torch.Tensor;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace OnnxTeacherSample;

/// <summary>
/// The ImageNet-pretrained ResNet-18 that ML.NET ships as ONNX, as a feature teacher: a 28×28 grey image in [0, 1] is
/// resized to 224×224 (bilinear), scaled to 0–255 and copied to three channels, passed through the shipped
/// preprocessing model (RGB → BGR, minus the mean image), then through ResNet-18, whose 512-d pooled output is the
/// embedding the student learns. Both ONNX models take one image per call; <see cref="OnnxTeacher"/> feeds them so.
/// </summary>
internal sealed class ResNetTeacher : IDistillationModel<Tensor>, IDisposable
{
    public const string EmbeddingOutput = "Pooling395_Output_0";
    private readonly InferenceSession _preprocess;
    private readonly OnnxTeacher _resnet;

    public ResNetTeacher(string modelFolder, SessionOptions session)
    {
        ResNetPath = Path.Combine(modelFolder, "ResNet18Onnx", "ResNet18.onnx");
        _preprocess = new InferenceSession(Path.Combine(modelFolder, "ResNetPrepOnnx", "ResNetPreprocess.onnx"), session);
        _resnet = new OnnxTeacher(ResNetPath, new OnnxTeacherOptions { LogitsOutput = EmbeddingOutput, FlattenOutputs = true, SessionOptions = session });
    }

    /// <summary>The shipped models, copied next to the sample by the ResNet-18 package's build step.</summary>
    public static string DefaultModelFolder => Path.Combine(AppContext.BaseDirectory, "DnnImageModels");

    public string ResNetPath { get; }

    public ModelOutputKinds Provides => ModelOutputKinds.Logits;

    /// <summary>The embedding <c>[N, 512]</c> of images <c>[N, 1, 28, 28]</c> in [0, 1].</summary>
    public ModelOutput Run(Tensor images, OutputRequest request)
    {
        using var scope = NewDisposeScope();
        Tensor large = F.interpolate(images.to(ScalarType.Float32).cpu(), size: [224, 224], mode: InterpolationMode.Bilinear, align_corners: false);
        Tensor rgb = (large * 255).expand(-1, 3, -1, -1).contiguous();
        var prepared = new List<Tensor>();
        for (long i = 0; i < rgb.shape[0]; i++)
        {
            var input = NamedOnnxValue.CreateFromTensor("OriginalInput", new DenseTensor<float>(rgb.narrow(0, i, 1).data<float>().ToArray(), [1, 3, 224, 224]));
            using var results = _preprocess.Run([input]);
            prepared.Add(tensor(results.First().AsTensor<float>().ToArray(), [1, 3, 224, 224]));
        }
        return _resnet.Run(cat(prepared, 0), request).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _preprocess.Dispose();
        _resnet.Dispose();
    }
}
