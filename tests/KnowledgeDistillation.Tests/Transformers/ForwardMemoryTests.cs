using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Transformers;

/// <summary>
/// A forward pass frees each block's temporaries when the block ends (not when the model returns): the number of live
/// tensors when the last block runs does not grow with depth. Counted with TorchSharp's own live-tensor statistics at a
/// hook on the last block's output projection.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public sealed class ForwardMemoryTests
{
    private static nn.Module Make(string family, int layers)
    {
        manual_seed(1);
        return family switch
        {
            "gpt" => new GptModel(new GptConfig { VocabSize = 50, ContextLength = 16, Width = 16, Heads = 2, Layers = layers, Dropout = 0 }),
            "bert" => new BertModel(new BertConfig { VocabSize = 50, ContextLength = 16, Width = 16, Heads = 2, Layers = layers, Dropout = 0, Head = BertHead.SequenceClassification }),
            _ => new LlamaModel(new LlamaConfig { VocabSize = 50, ContextLength = 16, Width = 16, Heads = 4, KeyValueHeads = 2, Layers = layers, FeedForwardWidth = 32 }),
        };
    }

    /// <summary>Tensors made live on this thread by the forward pass, counted while the last block's attention output projection runs.</summary>
    private static long LiveAtLastBlock(string family, int layers, bool grad, bool checkpointing = false)
    {
        nn.Module model = Make(family, layers);
        ((dynamic)model).ActivationCheckpointing = checkpointing;
        var projection = (TorchSharp.Modules.Linear)model.named_modules().Single(m => m.name == $"blocks.{layers - 1}.attention.output").module;
        long live = -1, before = 0;
        projection.register_forward_hook((_, _, output) =>
        {
            live = OwnedTensors.Live - before;
            return output;
        });
        using var scope = NewDisposeScope();
        Tensor ids = randint(0, 50, [2, 9]);
        Tensor mask = ones(2, 9, ScalarType.Int64);
        // Earlier tests' undisposed tensors finalised mid-forward would move this thread's count: collect them first.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        before = OwnedTensors.Live;
        using (grad ? enable_grad() : no_grad()) ((IModuleModel<TokenBatch>)model).Run(new TokenBatch(ids, mask), OutputRequest.LogitsOnly);
        return live;
    }

    [Theory]
    [InlineData("gpt")]
    [InlineData("bert")]
    [InlineData("llama")]
    public void The_last_block_runs_beside_as_many_live_tensors_however_deep_the_model(string family)
    {
        // Without the per-block scopes every earlier block's temporaries (about 15 each) were still alive here.
        LiveAtLastBlock(family, 6, grad: false).Should().Be(LiveAtLastBlock(family, 2, grad: false), "without gradients nothing of an earlier block is held");
        LiveAtLastBlock(family, 6, grad: true).Should().Be(LiveAtLastBlock(family, 2, grad: true), "with gradients autograd keeps its saved tensors natively, not through our handles");
        LiveAtLastBlock(family, 6, grad: true, checkpointing: true).Should().Be(LiveAtLastBlock(family, 2, grad: true, checkpointing: true) + 4,
            "each checkpointed block holds one tensor of its own, the generator state its recomputation restores");
    }
}
