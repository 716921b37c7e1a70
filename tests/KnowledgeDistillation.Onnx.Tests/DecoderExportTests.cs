using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;
using DenseLongTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>Exported decoders (<see cref="GptModel"/>, <see cref="LlamaModel"/>) run in ONNX Runtime and match TorchSharp's logits and hidden states to 1e-4.</summary>
public class DecoderExportTests
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
            ShouldMatch(path, model, 41, [(1, 1), (3, 7), (2, 20)]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    public static TheoryData<int, int, int?, bool> LlamaShapes() => new()
    {
        { 4, 0, null, false }, { 2, 0, null, true }, { 1, 12, 4, false },
    };

    [Theory]
    [MemberData(nameof(LlamaShapes))]
    public void Llama_family_exports_match_with_grouped_query_attention_head_width_and_sliding_windows(int keyValueHeads, int headWidth, int? window, bool qkvBias)
    {
        manual_seed(10);
        var model = new LlamaModel(new LlamaConfig
        {
            VocabSize = 37, ContextLength = 16, Width = 32, Heads = 4, KeyValueHeads = keyValueHeads, HeadWidth = headWidth, Layers = 2, FeedForwardWidth = 48,
            SlidingWindow = window, QueryKeyValueBias = qkvBias, RopeTheta = 500, Family = qkvBias ? DecoderFamily.Qwen2 : DecoderFamily.Llama,
        });
        model.eval();
        string path = Path.Combine(Path.GetTempPath(), $"kd-llama-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(model, path, hiddenStates: true);
            ShouldMatch(path, model, 37, [(1, 1), (3, 9), (2, 16)]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Runs the exported decoder in ONNX Runtime on random ids of each [batch, length] and compares logits and every hidden state with TorchSharp.</summary>
    private static void ShouldMatch(string path, IModuleModel<TokenBatch> model, int vocabulary, (int Batch, int Length)[] shapes)
    {
        using var session = new InferenceSession(path);
        foreach ((int b, int s) in shapes)
        {
            using var scope = NewDisposeScope();
            Tensor ids = randint(0, vocabulary, [b, s]);
            using ModelOutput expected = model.Forward(new TokenBatch(ids), new OutputRequest(HiddenStates: true));
            var input = NamedOnnxValue.CreateFromTensor("input_ids", new DenseLongTensor(ids.data<long>().ToArray(), [b, s]));
            using var results = session.Run([input]);
            Tensor Output(string name)
            {
                var t = results.First(r => r.Name == name).AsTensor<float>();
                return tensor(t.ToArray(), t.Dimensions.ToArray().Select(d => (long)d).ToArray());
            }
            (Output("logits") - expected.Logits).abs().max().item<float>().Should().BeLessThan(1e-4f, $"logits at [{b}, {s}]");
            for (int layer = 1; layer < expected.HiddenStates!.Count; layer++)
            {
                (Output($"hidden.{layer}") - expected.HiddenStates[layer]).abs().max().item<float>().Should().BeLessThan(1e-4f, $"hidden state {layer} at [{b}, {s}]");
            }
        }
    }
}
