using TorchSharp;

namespace KnowledgeDistillation.Tests;

/// <summary>
/// The tensors the calling thread has created and not yet disposed. Leak tests count with this rather than with the
/// process-wide <c>Tensor.TotalCount</c>, which also moves when tests on other threads create tensors and when the
/// finaliser thread disposes garbage that earlier code left behind: a leak test must count only what the code under
/// test owns. A tensor that the code under test leaks stays counted here even if the garbage collector later
/// finalises it (that happens on the finaliser thread).
/// </summary>
internal static class OwnedTensors
{
    public static long Live => DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
}
