// Placeholder for the TinyGpt sample (a byte-level GPT teacher distilled into a half-depth student).
// Until that lands, it checks that TorchSharp's native backend works here and prints the first fact of the
// distillation story: dividing a teacher's logits by a temperature T > 1 flattens its distribution.
using System.Globalization;
using KnowledgeDistillation.Runtime;
using TorchSharp;

try
{
    TorchRuntimeInfo info = TorchRuntimeInfo.Probe();
    Console.WriteLine($"TorchSharp {info.TorchSharpVersion}; device: {info.DefaultDevice}; CUDA available: {info.CudaAvailable}" +
                      $" ({info.CudaDeviceCount} device(s)); intra-op threads: {info.IntraOpThreads}");

    // Next-token logits a teacher might produce after "The cat sat on the".
    string[] tokens = ["mat", "sofa", "floor", "roof", "moon"];
    float[] logits = [6.0f, 3.5f, 3.0f, 1.0f, -2.0f];

    Console.WriteLine();
    Console.WriteLine("Teacher probabilities softened by temperature T, p = softmax(z / T):");
    Console.WriteLine("T    " + string.Concat(tokens.Select(t => t.PadLeft(8))));
    using var scope = torch.NewDisposeScope();
    torch.Tensor z = torch.tensor(logits, device: DeviceSelection.Resolve(DeviceSelection.Auto));
    foreach (double temperature in new[] { 1.0, 2.0, 3.0, 6.0 })
    {
        float[] p = z.div(temperature).softmax(0).cpu().data<float>().ToArray();
        Console.WriteLine(temperature.ToString("0", CultureInfo.InvariantCulture).PadRight(5) +
                          string.Concat(p.Select(v => v.ToString("0.000", CultureInfo.InvariantCulture).PadLeft(8))));
    }

    Console.WriteLine();
    Console.WriteLine("The full TinyGpt distillation sample is not built yet; this run only checks the setup.");
    return 0;
}
catch (Exception e)
{
    Console.Error.WriteLine("TinyGpt failed: " + e.Message);
    return 1;
}
