using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxTeacherSample;

/// <summary>Images per second of an ONNX model in ONNX Runtime, on random inputs after a warm-up, with the session options given.</summary>
internal static class Speed
{
    public static double ImagesPerSecond(string modelPath, SessionOptions options, int[] inputShape, int images)
    {
        using var session = new InferenceSession(modelPath, options);
        string input = session.InputMetadata.Keys.Single();
        int batch = inputShape[0], perImage = inputShape.Skip(1).Aggregate(1, (a, b) => a * b);
        var random = new Random(7);
        float[] data = Enumerable.Range(0, batch * perImage).Select(_ => (float)random.NextDouble()).ToArray();
        var value = NamedOnnxValue.CreateFromTensor(input, new DenseTensor<float>(data, inputShape));
        for (int i = 0; i < 3; i++) session.Run([value]).Dispose();
        int calls = Math.Max(1, images / batch);
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < calls; i++) session.Run([value]).Dispose();
        return calls * batch / clock.Elapsed.TotalSeconds;
    }
}
