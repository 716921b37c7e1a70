using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;
using DenseLongTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>An exported <see cref="GptModel"/> runs in ONNX Runtime and matches TorchSharp's logits and hidden states to 1e-4.</summary>
public class GptExportTests
{
    [Theory]
    [InlineData(true, NormPlacement.Pre)]
    [InlineData(false, NormPlacement.Pre)]
    [InlineData(true, NormPlacement.Post)]
    public void Logits_and_hidden_states_match_at_several_batch_sizes_and_lengths(bool tie, NormPlacement placement)
    {
        manual_seed(9);
        var model = new GptModel(new GptConfig { VocabSize = 41, ContextLength = 20, Width = 32, Heads = 4, Layers = 2, Dropout = 0, TieEmbeddings = tie, NormPlacement = placement });
        model.eval();
        string path = Path.Combine(Path.GetTempPath(), $"kd-gpt-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(model, path, hiddenStates: true);
            using var session = new InferenceSession(path);
            foreach ((long b, long s) in new[] { (1L, 1L), (3L, 7L), (2L, 20L) })
            {
                using var scope = NewDisposeScope();
                Tensor ids = randint(0, 41, [b, s]);
                using ModelOutput expected = model.Forward(new TokenBatch(ids), new OutputRequest(HiddenStates: true));
                var input = NamedOnnxValue.CreateFromTensor("input_ids", new DenseLongTensor(ids.data<long>().ToArray(), [(int)b, (int)s]));
                using var results = session.Run([input]);
                Tensor Output(string name)
                {
                    var t = results.First(r => r.Name == name).AsTensor<float>();
                    return tensor(t.ToArray(), t.Dimensions.ToArray().Select(d => (long)d).ToArray());
                }
                (Output("logits") - expected.Logits).abs().max().item<float>().Should().BeLessThan(1e-4f, $"logits at [{b}, {s}]");
                for (int layer = 1; layer <= 2; layer++)
                {
                    (Output($"hidden.{layer}") - expected.HiddenStates![layer]).abs().max().item<float>().Should().BeLessThan(1e-4f, $"hidden state {layer} at [{b}, {s}]");
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
