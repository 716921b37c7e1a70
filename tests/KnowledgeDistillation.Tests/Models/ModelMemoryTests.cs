using KnowledgeDistillation.Models;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Models;

public class ModelMemoryTests
{
    [Fact]
    public void Repeated_forwards_leak_no_tensors()
    {
        GptModel gpt = TinyModels.GptModel();
        BertModel bert = TinyModels.BertModel();
        using CapturingModel captured = DistillationModel.WithCapturedHiddenStates(AdapterAndCaptureTests.Mlp(), "1", "3");
        Tensor ids = TinyModels.Ids(1, 2, 8, 29), mask = ones([2, 8], dtype: ScalarType.Int64), x = randn(3, 6);
        void Step()
        {
            using var scope = NewDisposeScope();
            gpt.Run(new TokenBatch(ids, mask), OutputRequest.Everything);
            gpt.Run(new TokenBatch(ids), OutputRequest.LogitsOnly);
            bert.Run(new TokenBatch(ids, mask), OutputRequest.Everything);
            captured.Run(x, new OutputRequest(HiddenStates: true));
            captured.Run(x, OutputRequest.LogitsOnly);
        }
        Step();
        long baseline = OwnedTensors.Live;

        for (int i = 0; i < 20; i++) Step();

        OwnedTensors.Live.Should().Be(baseline);
    }
}
