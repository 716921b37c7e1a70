using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using KnowledgeDistillation.Pretrained;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>
/// Every supported architecture, built from its <c>config.json</c> and loaded from safetensors, a bfloat16
/// <c>pytorch_model.bin</c> and float16 shards, reproduces what real PyTorch computed for it to 1e-4.
/// </summary>
public class PretrainedLoadTests
{
    public static TheoryData<string, string, string> Folders()
    {
        var data = new TheoryData<string, string, string>();
        foreach ((string name, string architecture) in new[]
        {
            ("gpt2", "GPT2LMHeadModel"), ("bert-classification", "BertForSequenceClassification"), ("llama", "LlamaForCausalLM"),
            ("qwen2", "Qwen2ForCausalLM"), ("mistral", "MistralForCausalLM"),
        })
        {
            foreach (string format in new[] { "", "-bin", "-sharded" }) data.Add(name, name + format, architecture);
        }
        data.Add("bert-masked-lm", "bert-masked-lm", "BertForMaskedLM");
        data.Add("bert-pretraining", "bert-pretraining", "BertForPreTraining");
        data.Add("bert-encoder", "bert-encoder", "BertModel");
        return data;
    }

    [Theory]
    [MemberData(nameof(Folders))]
    public void Loads_and_matches_PyTorch_logits_hidden_states_and_attention(string fixture, string folder, string architecture)
    {
        using var scope = NewDisposeScope();
        PretrainedFixtures.Expected expected = PretrainedFixtures.Read(fixture);
        PretrainedModel<IModuleModel<TokenBatch>> loaded = PretrainedFolder.Load(PretrainedFixtures.Folder(folder));
        loaded.Source.Architecture.Should().Be(architecture);
        loaded.Model.Module.training.Should().BeFalse("from_pretrained returns models in evaluation mode");

        using var noGrad = no_grad();
        var convention = new OutputRequest(HiddenStates: true, AttentionProbabilities: true);
        ModelOutput output = WithHuggingFaceHiddenStates(loaded.Model).Run(expected.Batch, convention);
        PretrainedFixtures.MaxAbs(output.Logits, expected.Logits).Should().BeLessThan(1e-4);
        output.HiddenStates!.Count.Should().Be(expected.HiddenStates.Count);
        for (int i = 0; i < expected.HiddenStates.Count; i++)
        {
            PretrainedFixtures.MaxAbs(output.HiddenStates[i], expected.HiddenStates[i]).Should().BeLessThan(1e-4, $"hidden state {i}");
        }
        output.AttentionProbabilities!.Count.Should().Be(expected.Attentions.Count);
        for (int i = 0; i < expected.Attentions.Count; i++)
        {
            PretrainedFixtures.MaxAbs(output.AttentionProbabilities[i], expected.Attentions[i]).Should().BeLessThan(1e-4, $"attention {i}");
        }
        ((nn.Module)loaded.Model.Module).Dispose();
    }

    [Theory]
    [MemberData(nameof(Folders))]
    public void The_fast_path_without_maps_gives_the_same_logits(string fixture, string folder, string architecture)
    {
        _ = architecture;
        using var scope = NewDisposeScope();
        PretrainedFixtures.Expected expected = PretrainedFixtures.Read(fixture);
        PretrainedModel<IModuleModel<TokenBatch>> loaded = PretrainedFolder.Load(PretrainedFixtures.Folder(folder));
        using var noGrad = no_grad();
        Tensor logits = loaded.Model.Run(expected.Batch, OutputRequest.LogitsOnly).Logits;
        PretrainedFixtures.MaxAbs(logits, expected.Logits).Should().BeLessThan(1e-4);
    }

    /// <summary>The fixture holds <c>hidden_states</c> as transformers returns them: the last one after the final norm.</summary>
    private static IModuleModel<TokenBatch> WithHuggingFaceHiddenStates(IModuleModel<TokenBatch> model)
    {
        nn.Module module = model.Module;
        IModuleModel<TokenBatch> rebuilt = module switch
        {
            GptModel g => new GptModel(g.Config with { HiddenStates = HiddenStateConvention.HuggingFace }),
            LlamaModel l => new LlamaModel(l.Config with { HiddenStates = HiddenStateConvention.HuggingFace }),
            _ => model,
        };
        if (!ReferenceEquals(rebuilt, model))
        {
            using var noGrad = no_grad();
            foreach ((string name, Tensor value) in module.state_dict()) rebuilt.Module.state_dict()[name].copy_(value);
            rebuilt.Module.eval();
        }
        return rebuilt;
    }
}
