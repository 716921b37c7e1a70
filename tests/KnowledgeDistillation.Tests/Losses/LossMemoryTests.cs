using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>Repeated forward and backward passes inside a dispose scope leave no managed tensor alive.</summary>
public class LossMemoryTests
{
    [Fact]
    public void No_loss_leaks_tensors_over_repeated_steps()
    {
        var kl = new SoftTargetKLLoss();
        var chunkedKl = new SoftTargetKLLoss { MaxChunkElements = 22 }; // two rows of 11 classes per chunk
        var jsd = new GeneralizedJensenShannonLoss(0.4, 2.0, normalize: true);
        var ce = new HardTargetCrossEntropyLoss(labelSmoothing: 0.1);
        var cosine = new CosineEmbeddingLoss(studentWidth: 6, teacherWidth: 8);
        var attention = new AttentionMseLoss(AttentionMapKind.Scores);
        Tensor logits = randn(2, 5, 11).requires_grad_(), teacherLogits = randn(2, 5, 11);
        Tensor labels = randint(0, 11, [2, 5]), mask = rand(2, 5).gt(0.3);
        Tensor hidden = randn(2, 5, 6).requires_grad_(), teacherHidden = randn(2, 5, 8);
        Tensor maps = randn(2, 2, 5, 5).requires_grad_(), teacherMaps = randn(2, 4, 5, 5);
        void Step()
        {
            using var scope = NewDisposeScope();
            Tensor total = kl.forward(logits, teacherLogits, mask, labels) + jsd.forward(logits, teacherLogits, mask)
                + chunkedKl.forward(logits, teacherLogits, mask, labels)
                + ce.forward(logits, labels, mask) + cosine.forward(hidden, teacherHidden, mask) + attention.forward(maps, teacherMaps, mask);
            total.backward();
        }
        Step(); // warm-up: first use creates lazily-initialised state (e.g. gradient buffers)
        long baseline = OwnedTensors.Live;

        for (int i = 0; i < 50; i++) Step();

        OwnedTensors.Live.Should().Be(baseline);
    }
}
