using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;
using DenseLongTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>Exported transformers (<see cref="GptModel"/>, <see cref="LlamaModel"/>, <see cref="BertModel"/>) run in ONNX Runtime and match TorchSharp's logits and hidden states to 1e-4.</summary>
public class TransformerExportTests
{
    [Theory]
    [InlineData(true, NormPlacement.Pre, HiddenStateConvention.BlockOutputs)]
    [InlineData(false, NormPlacement.Pre, HiddenStateConvention.HuggingFace)]
    [InlineData(true, NormPlacement.Post, HiddenStateConvention.BlockOutputs)]
    public void Logits_and_hidden_states_match_at_several_batch_sizes_and_lengths(bool tie, NormPlacement placement, HiddenStateConvention convention)
    {
        manual_seed(9);
        var model = new GptModel(new GptConfig
        {
            VocabSize = 41, ContextLength = 20, Width = 32, Heads = 4, Layers = 2, Dropout = 0, TieEmbeddings = tie, NormPlacement = placement, HiddenStates = convention,
        });
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

    [Fact]
    public void A_model_with_unmerged_LoRA_adapters_exports_merged_and_matches()
    {
        manual_seed(10);
        var model = new GptModel(new GptConfig { VocabSize = 41, ContextLength = 20, Width = 32, Heads = 4, Layers = 2, Dropout = 0 });
        model.eval();
        KnowledgeDistillation.Adapters.LoraAdapters adapters = KnowledgeDistillation.Adapters.Lora.Apply(
            model, new KnowledgeDistillation.Adapters.LoraOptions { Targets = [.. KnowledgeDistillation.Adapters.LoraTargets.GptBertAll], Rank = 4 });
        using (no_grad())
        {
            foreach (KnowledgeDistillation.Adapters.LoraLayer layer in adapters.Layers) layer.B.weight!.copy_(randn_like(layer.B.weight!) * 0.2);
        }
        string path = Path.Combine(Path.GetTempPath(), $"kd-gpt-lora-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(model, path, hiddenStates: true);
            adapters.IsMerged.Should().BeFalse();
            // ShouldMatch compares with the adapted model's own TorchSharp outputs, which include the adapters' updates.
            ShouldMatch(path, model, 41, [(2, 9)]);
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
            HiddenStates = qkvBias ? HiddenStateConvention.HuggingFace : HiddenStateConvention.BlockOutputs,
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

    public static TheoryData<BertHead, bool, NormPlacement> BertShapes() => new()
    {
        { BertHead.SequenceClassification, true, NormPlacement.Post },
        { BertHead.SequenceClassification, false, NormPlacement.Pre },
        { BertHead.MaskedLM, false, NormPlacement.Post },
        { BertHead.None, false, NormPlacement.Pre },
    };

    [Theory]
    [MemberData(nameof(BertShapes))]
    public void Bert_exports_match_with_padding_masks_token_types_and_every_head(BertHead head, bool pooler, NormPlacement placement)
    {
        manual_seed(11);
        var model = new BertModel(new BertConfig
        {
            VocabSize = 43, ContextLength = 16, Width = 32, Heads = 4, Layers = 2, Dropout = 0, TypeVocabSize = 2, NumLabels = 3,
            Head = head, UsePooler = pooler, NormPlacement = placement, Activation = FeedForwardActivation.GeluTanh,
        });
        model.eval();
        string path = Path.Combine(Path.GetTempPath(), $"kd-bert-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(model, path, hiddenStates: true);
            using var session = new InferenceSession(path);
            session.InputMetadata.Keys.Should().Equal("input_ids", "attention_mask", "token_type_ids");
            foreach ((int b, int s) in new[] { (1, 1), (3, 9), (2, 16) })
            {
                using var scope = NewDisposeScope();
                Tensor ids = randint(0, 43, [b, s]);
                Tensor types = randint(0, 2, [b, s]);
                // Row r keeps its first s − r tokens (at least one); the rest is padding that no query may attend to.
                Tensor mask = arange(s).unsqueeze(0).lt((s - arange(b)).clamp_min(1).unsqueeze(1)).to(ScalarType.Int64);
                using ModelOutput expected = model.Run(new TokenBatch(ids, mask, types), new OutputRequest(HiddenStates: true));
                NamedOnnxValue Input(string name, Tensor t) => NamedOnnxValue.CreateFromTensor(name, new DenseLongTensor(t.contiguous().data<long>().ToArray(), [b, s]));
                using var results = session.Run([Input("input_ids", ids), Input("attention_mask", mask), Input("token_type_ids", types)]);
                MaxDifference(results, "logits", expected.Logits).Should().BeLessThan(1e-4f, $"{head} logits at [{b}, {s}]");
                for (int layer = 0; layer < expected.HiddenStates!.Count; layer++)
                {
                    MaxDifference(results, $"hidden.{layer}", expected.HiddenStates[layer]).Should().BeLessThan(1e-4f, $"hidden state {layer} at [{b}, {s}]");
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static float MaxDifference(IEnumerable<DisposableNamedOnnxValue> results, string name, Tensor expected)
    {
        var t = results.First(r => r.Name == name).AsTensor<float>();
        t.Dimensions.ToArray().Select(d => (long)d).Should().Equal(expected.shape, $"the shape of {name}");
        return (tensor(t.ToArray(), expected.shape) - expected).abs().max().item<float>();
    }

    /// <summary>Runs the exported decoder in ONNX Runtime on random ids of each [batch, length] and compares logits and every hidden state with TorchSharp.</summary>
    private static void ShouldMatch(string path, IModuleModel<TokenBatch> model, int vocabulary, (int Batch, int Length)[] shapes)
    {
        using var session = new InferenceSession(path);
        foreach ((int b, int s) in shapes)
        {
            using var scope = NewDisposeScope();
            Tensor ids = randint(0, vocabulary, [b, s]);
            using ModelOutput expected = model.Run(new TokenBatch(ids), new OutputRequest(HiddenStates: true));
            var input = NamedOnnxValue.CreateFromTensor("input_ids", new DenseLongTensor(ids.data<long>().ToArray(), [b, s]));
            using var results = session.Run([input]);
            MaxDifference(results, "logits", expected.Logits).Should().BeLessThan(1e-4f, $"logits at [{b}, {s}]");
            for (int layer = 0; layer < expected.HiddenStates!.Count; layer++)
            {
                MaxDifference(results, $"hidden.{layer}", expected.HiddenStates[layer]).Should().BeLessThan(1e-4f, $"hidden state {layer} at [{b}, {s}]");
            }
        }
    }
}
