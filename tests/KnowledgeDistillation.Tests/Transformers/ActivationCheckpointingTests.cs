using KnowledgeDistillation.Adapters;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Transformers;

[Collection(GlobalRngCollection.Name)]
public sealed class ActivationCheckpointingTests
{
    private static IModuleModel<TokenBatch> Make(string family, int seed)
    {
        manual_seed(seed);
        return family switch
        {
            "gpt" => new GptModel(new GptConfig { VocabSize = 50, ContextLength = 16, Width = 16, Heads = 2, Layers = 3, Dropout = 0.2 }),
            "bert" => new BertModel(new BertConfig { VocabSize = 50, ContextLength = 16, Width = 16, Heads = 2, Layers = 3, Dropout = 0.2, Head = BertHead.SequenceClassification }),
            _ => new LlamaModel(new LlamaConfig { VocabSize = 50, ContextLength = 16, Width = 16, Heads = 4, KeyValueHeads = 2, Layers = 3, FeedForwardWidth = 32 }),
        };
    }

    /// <summary>A step's gradients (by parameter name), the loss, and one draw of the generator afterwards.</summary>
    private static (Dictionary<string, float[]> Grads, float Loss, float After) Step(IModuleModel<TokenBatch> model, bool checkpointing)
    {
        ((dynamic)model.Module).ActivationCheckpointing = checkpointing;
        model.Module.train();
        manual_seed(77);
        Tensor ids = randint(0, 50, [2, 9]);
        Tensor mask = ones(2, 9, ScalarType.Int64);
        mask[1, 6..] = 0;
        ModelOutput output = model.Run(new TokenBatch(ids, mask), new OutputRequest(HiddenStates: true));
        // Logits and every hidden state take part, as hidden-state distillation terms do.
        Tensor loss = output.Logits.square().mean() + output.HiddenStates!.Skip(1).Select(h => h.tanh().mean()).Aggregate((a, b) => a + b);
        loss.backward();
        var grads = model.Module.named_parameters().Where(p => p.parameter.requires_grad)
            .ToDictionary(p => p.name, p => p.parameter.grad is null ? [] : p.parameter.grad.data<float>().ToArray());
        return (grads, loss.item<float>(), rand(1).item<float>());
    }

    [Theory]
    [InlineData("gpt")]
    [InlineData("bert")]
    [InlineData("llama")]
    public void Checkpointed_blocks_give_the_plain_paths_loss_gradients_and_random_stream(string family)
    {
        (Dictionary<string, float[]> plain, float plainLoss, float plainAfter) = Step(Make(family, 3), checkpointing: false);
        (Dictionary<string, float[]> recomputed, float loss, float after) = Step(Make(family, 3), checkpointing: true);

        loss.Should().Be(plainLoss, "the forward pass draws the same dropout masks");
        after.Should().Be(plainAfter, "the recomputation leaves the generator where the plain path leaves it");
        recomputed.Keys.Should().BeEquivalentTo(plain.Keys);
        foreach ((string name, float[] g) in plain)
        {
            g.Should().NotBeEmpty($"{name} has a gradient");
            recomputed[name].Zip(g).Max(p => Math.Abs(p.First - p.Second)).Should().BeLessThanOrEqualTo(1e-6f, name);
        }
    }

    [Fact]
    public void A_LoRA_student_with_frozen_embeddings_still_gets_its_adapters_gradients_through_checkpointed_blocks()
    {
        IModuleModel<TokenBatch> plainModel = Make("gpt", 4), checkpointedModel = Make("gpt", 4);
        foreach (IModuleModel<TokenBatch> m in new[] { plainModel, checkpointedModel })
        {
            manual_seed(5);
            LoraAdapters adapters = Lora.Apply(m.Module, new LoraOptions { Targets = [.. LoraTargets.GptBertAll], Rank = 2, Dropout = 0.1 });
            using (no_grad())
            {
                foreach (LoraLayer layer in adapters.Layers) layer.B.weight!.normal_(0, 0.1);
            }
        }
        (Dictionary<string, float[]> plain, _, _) = Step(plainModel, checkpointing: false);
        (Dictionary<string, float[]> recomputed, _, _) = Step(checkpointedModel, checkpointing: true);
        plain.Should().HaveCount(24).And.OnlyContain(p => p.Key.Contains(".lora_"));
        foreach ((string name, float[] g) in plain)
        {
            recomputed[name].Should().NotBeEmpty($"{name} gets a gradient although the embeddings are frozen");
            recomputed[name].Zip(g).Max(p => Math.Abs(p.First - p.Second)).Should().BeLessThanOrEqualTo(1e-6f, name);
        }
    }

    [Fact]
    public void Each_checkpointed_block_runs_again_in_the_backward_pass_and_only_while_gradients_are_on()
    {
        var model = (GptModel)Make("gpt", 6);
        int calls = 0;
        var qkv = (TorchSharp.Modules.Linear)model.named_modules().Single(m => m.name == "blocks.0.attention.qkv").module;
        qkv.register_forward_hook((_, _, output) =>
        {
            calls++;
            return output;
        });
        Tensor ids = randint(0, 50, [2, 5]);
        foreach ((bool checkpointing, bool grad, int expected) in new[] { (false, true, 1), (true, true, 2), (true, false, 1) })
        {
            calls = 0;
            model.ActivationCheckpointing = checkpointing;
            using (grad ? enable_grad() : no_grad())
            {
                Tensor logits = model.Run(new TokenBatch(ids), OutputRequest.LogitsOnly).Logits;
                if (grad) logits.sum().backward();
            }
            calls.Should().Be(expected, $"checkpointing {checkpointing}, gradients {grad}");
        }
    }
}
