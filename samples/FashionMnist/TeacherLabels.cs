using KnowledgeDistillation.Caching;
using Samples.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace FashionMnist;

/// <summary>
/// The teacher labels its transfer set once: every view of the training images goes through it, and its logits
/// are written to a values cache (float32, the logits exactly) on disk. The students then read the cache instead
/// of running the teacher, so a distilled epoch costs what an epoch alone costs, and a second run of the sample
/// (another seed, another student) does not label again. Example index of (view, row) in the cache: view · images + row.
/// </summary>
internal static class TeacherLabels
{
    /// <summary>Opens the cache at <paramref name="path"/>, labelling first when it is missing or <paramref name="relabel"/> is set (a new teacher).</summary>
    public static TeacherCache Open(string path, nn.Module<Tensor, Tensor> teacher, Tensor images, Augmentation views, bool relabel)
    {
        long expected = views.Views * images.shape[0];
        if (relabel || !File.Exists(path)) Write(path, teacher, images, views);
        TeacherCache cache = TeacherCache.Open(path);
        if (cache.Examples == expected && cache.Content == TeacherCacheContent.Float32Values) return cache;
        cache.Dispose();
        throw new InvalidDataException($"{path} holds {cache.Examples:N0} examples ({cache.Content}); this run needs {expected:N0} ({views.Views} views of " +
            $"{images.shape[0]:N0} images) as {TeacherCacheContent.Float32Values}. Delete it to label again.");
    }

    /// <summary>The cached teacher: a batch's logits are the cache rows of its view and image rows.</summary>
    public static CachedTeacher<Images> Teacher(TeacherCache cache, long images) => new(cache, batch => batch.Rows.add(batch.View * images));

    private static void Write(string path, nn.Module<Tensor, Tensor> teacher, Tensor images, Augmentation views)
    {
        const int chunk = 1000;
        Device device = SampleDevice.Of(teacher);
        teacher.eval();
        using var noGrad = no_grad();
        using var writer = TeacherCacheWriter.ForValues(path, ScalarType.Float32);
        long count = images.shape[0];
        for (int view = 0; view < views.Views; view++)
        {
            for (long start = 0; start < count; start += chunk)
            {
                using var scope = NewDisposeScope();
                Tensor rows = arange(start, Math.Min(count, start + chunk));
                writer.Append(teacher.call(views.Apply(images, view, rows).to(device)));
            }
        }
        writer.Complete();
    }
}
