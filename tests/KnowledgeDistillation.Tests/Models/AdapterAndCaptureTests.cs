using KnowledgeDistillation.Models;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Models;

public class AdapterAndCaptureTests
{
    internal static nn.Module<Tensor, Tensor> Mlp()
    {
        manual_seed(11);
        return nn.Sequential(("0", nn.Linear(6, 10)), ("1", nn.ReLU()), ("2", nn.Linear(10, 8)), ("3", nn.Tanh()), ("4", nn.Linear(8, 3)));
    }

    [Fact]
    public void Hook_capture_on_a_Sequential_gives_the_same_tensors_as_a_manual_forward()
    {
        using var scope = NewDisposeScope();
        var mlp = (TorchSharp.Modules.Sequential)Mlp();
        Tensor x = randn(5, 6);
        var layers = mlp.children().Cast<nn.Module<Tensor, Tensor>>().ToArray();
        Tensor h1 = layers[1].call(layers[0].call(x)), h3 = layers[3].call(layers[2].call(h1)), logits = layers[4].call(h3);

        using CapturingModel model = DistillationModel.WithCapturedHiddenStates(mlp, "1", "3");
        using ModelOutput output = model.Run(x, new OutputRequest(HiddenStates: true));

        output.Logits.ShouldBeClose(logits, 0);
        output.HiddenStates!.Should().HaveCount(2);
        output.HiddenStates![0].ShouldBeClose(h1, 0);
        output.HiddenStates![1].ShouldBeClose(h3, 0);
    }

    [Fact]
    public void Disposing_the_capture_removes_its_hooks()
    {
        using var scope = NewDisposeScope();
        var mlp = Mlp();
        var capture = new FeatureCapture(mlp, "2");
        mlp.call(randn(2, 6));
        capture.Take().Should().HaveCount(1);

        capture.Dispose();
        mlp.call(randn(2, 6));

        ((Action)(() => capture.Take())).Should().Throw<InvalidOperationException>().WithMessage("Submodule \"2\" produced no output in this forward pass*");
    }

    [Fact]
    public void Unknown_names_and_modules_that_do_not_run_fail_clearly()
    {
        using var scope = NewDisposeScope();
        ((Action)(() => new FeatureCapture(Mlp(), "9"))).Should().Throw<ArgumentException>()
            .WithMessage("The module has no submodule named \"9\". Its submodules are: 0, 1, 2, 3, 4.*");
    }

    [Fact]
    public void The_plain_logits_adapter_needs_no_code_and_refuses_requests_it_cannot_serve()
    {
        using var scope = NewDisposeScope();
        var mlp = Mlp();
        IModuleModel<Tensor> model = DistillationModel.FromLogits(mlp);
        Tensor x = randn(4, 6);

        model.Run(x, OutputRequest.LogitsOnly).Logits.ShouldBeClose(mlp.call(x), 0);
        model.Module.Should().BeSameAs(mlp);
        ((Action)(() => model.Run(x, new OutputRequest(HiddenStates: true)))).Should().Throw<NotSupportedException>().WithMessage("*WithCapturedHiddenStates*");
    }

    [Fact]
    public void The_delegate_adapter_builds_any_output()
    {
        using var scope = NewDisposeScope();
        var mlp = Mlp();
        IDistillationModel<(Tensor X, Tensor Scale)> model = DistillationModel.FromDelegate<nn.Module<Tensor, Tensor>, (Tensor X, Tensor Scale)>(mlp, (m, batch, request) => new ModelOutput(m.call(batch.X) * batch.Scale));
        Tensor x = randn(2, 6);

        model.Run((x, tensor(2f)), OutputRequest.LogitsOnly).Logits.ShouldBeClose(mlp.call(x) * 2, 1e-6);
    }

    [Fact]
    public void A_model_output_frees_its_tensors_but_not_the_batch_mask()
    {
        Tensor mask = ones(2, 3);
        var output = new ModelOutput(randn(2, 4).DetachFromDisposeScope(), [randn(2, 3).DetachFromDisposeScope()], attentionMask: mask);

        output.Dispose();

        output.Logits.IsInvalid.Should().BeTrue();
        output.HiddenStates![0].IsInvalid.Should().BeTrue();
        mask.IsInvalid.Should().BeFalse();
        mask.Dispose();
    }
}
