using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// Activation checkpointing for one block (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"; PyTorch's
/// <c>torch.utils.checkpoint</c>): the forward pass keeps only the block's input, and the backward pass runs the block
/// again with gradients on to get what it needs, trading one more forward pass per block for its activations. Random
/// draws (dropout) repeat exactly in the recomputation: the CPU generator's state is saved and restored around it, and a
/// CUDA input's generator is seeded from a CPU draw at both passes (TorchSharp exposes no CUDA generator state).
/// </summary>
internal static class ActivationCheckpoint
{
    /// <summary>
    /// Takes tensors a checkpointed block reads besides its input out of the caller's dispose scope: the backward pass
    /// recomputes the block after that scope has ended. They are freed by the collector once the graph lets them go.
    /// </summary>
    public static void Keep(IEnumerable<Tensor?> captured)
    {
        foreach (Tensor? t in captured) t?.DetachFromDisposeScope();
    }

    /// <summary>block(x), with the block's activations recomputed in the backward pass instead of kept.</summary>
    public static Tensor Run(Tensor x, Func<Tensor, Tensor> block)
    {
        // Without an input that needs a gradient autograd would never call backward, and a frozen-embedding student (LoRA)
        // would get no gradient for the block's own parameters.
        Tensor input = x.requires_grad ? x : x.detach().requires_grad_();
        return CheckpointFunction.apply(input, new BlockCall(block));
    }

    private sealed class BlockCall(Func<Tensor, Tensor> block)
    {
        public Func<Tensor, Tensor> Block { get; } = block;

        public Tensor? CpuRngState { get; set; }

        public long? CudaSeed { get; set; }
    }

    private sealed class CheckpointFunction : TorchSharp.torch.autograd.SingleTensorFunction<CheckpointFunction>
    {
        public override string Name => nameof(ActivationCheckpoint);

        public override Tensor forward(TorchSharp.torch.autograd.AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[0];
            var call = (BlockCall)vars[1];
            if (x.device_type == DeviceType.CUDA)
            {
                call.CudaSeed = randint(long.MaxValue, [1], dtype: ScalarType.Int64).item<long>();
                cuda.manual_seed(call.CudaSeed.Value);
            }
            // Out of any dispose scope: the model's scope ends long before the backward pass reads it.
            call.CpuRngState = get_rng_state().DetachFromDisposeScope();
            Tensor output;
            using (no_grad()) output = call.Block(x);
            ctx.save_for_backward([x]);
            ctx.save_data("call", call);
            return output;
        }

        public override List<Tensor> backward(TorchSharp.torch.autograd.AutogradContext ctx, Tensor gradOutput)
        {
            Tensor x = ctx.get_saved_variables()[0];
            var call = (BlockCall)ctx.get_data("call");
            Tensor now = get_rng_state();
            try
            {
                set_rng_state(call.CpuRngState!);
                if (call.CudaSeed is long seed) cuda.manual_seed(seed);
                using (enable_grad())
                {
                    // The recomputed block's tensors are freed as soon as its gradients are out: without this scope they
                    // would live in whatever scope called backward, every block's at once, undoing the saving.
                    using var recomputation = NewDisposeScope();
                    using Tensor input = x.detach().requires_grad_();
                    Tensor output = call.Block(input);
                    // Reentrant, as torch.utils.checkpoint's original form: the block's parameters get their gradients here.
                    TorchSharp.torch.autograd.backward([output], [gradOutput]);
                    return [(input.grad is null ? zeros_like(x) : input.grad.detach().clone()).MoveToOuterDisposeScope(), null!];
                }
            }
            finally
            {
                set_rng_state(now);
                now.Dispose();
            }
        }
    }
}
