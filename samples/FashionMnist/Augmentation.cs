using static TorchSharp.torch;

namespace FashionMnist;

/// <summary>
/// Extra inputs for the teacher to label: view 0 is the training set as it is; every other view blends each image
/// with another training image, x' = (1 − λ)·x_i + λ·x_j with λ uniform in [0, maxBlend] (mixup with the teacher
/// as the labeller). The views are drawn once from a seed, so the teacher labels each of them once (the cache) and
/// the student sees exactly the image the teacher labelled, the "consistent teaching" of Beyer et al. (2022).
/// The blends show the student how the teacher behaves between the training images, where 60,000 examples say
/// nothing; their hard label is x_i's, which still dominates the blend.
/// </summary>
internal sealed class Augmentation : IDisposable
{
    private readonly Tensor _partners; // [views, images]
    private readonly Tensor _blend;    // [views, images, 1, 1, 1]

    public Augmentation(long images, int views, double maxBlend, long seed)
    {
        if (views < 1) throw new ArgumentOutOfRangeException(nameof(views), views, "At least one view (the images as they are) is needed.");
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)seed);
        Tensor partners = randint(0, images, [views, images], generator: generator);
        Tensor blend = rand([views, images], generator: generator) * maxBlend;
        blend[0] = 0;
        _partners = partners.DetachFromDisposeScope();
        _blend = blend.reshape(views, images, 1, 1, 1).DetachFromDisposeScope();
        Views = views;
    }

    public int Views { get; }

    /// <summary>The images of <paramref name="rows"/> as they appear in <paramref name="view"/>.</summary>
    public Tensor Apply(Tensor allImages, int view, Tensor rows)
    {
        if (view == 0) return allImages.index_select(0, rows);
        using var scope = NewDisposeScope();
        Tensor blend = _blend[view].index_select(0, rows);
        Tensor partners = allImages.index_select(0, _partners[view].index_select(0, rows));
        return allImages.index_select(0, rows).mul(1 - blend).add_(partners.mul(blend)).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _partners.Dispose();
        _blend.Dispose();
    }
}
