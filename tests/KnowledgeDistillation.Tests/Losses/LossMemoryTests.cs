using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
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

    [Fact]
    public void Losses_called_outside_any_dispose_scope_leave_only_their_result()
    {
        // A loop without a dispose scope (or the first call of one) must not leak the checks' temporaries.
        var topK = new TopKSoftTargetLoss();
        var crd = new ContrastiveRepresentationLoss(3, 4, 10, negatives: 4, embeddingWidth: 5);
        Tensor logits = randn(4, 7), features = randn(4, 3), teacherFeatures = randn(4, 4), indices = tensor(new long[] { 0, 3, 5, 9 });
        using var targets = new TopKTargets(softmax(randn(4, 4), 1), tensor(new long[,] { { 0, 1, 2 }, { 3, 4, 5 }, { 6, 0, 1 }, { 2, 3, 4 } }), 1.0);
        topK.forward(logits, targets).Dispose();
        crd.forward(features, teacherFeatures, indices).Dispose();
        long baseline = OwnedTensors.Live;

        for (int i = 0; i < 5; i++)
        {
            topK.forward(logits, targets).Dispose();
            crd.forward(features, teacherFeatures, indices).Dispose();
        }

        OwnedTensors.Live.Should().Be(baseline);
    }
}
