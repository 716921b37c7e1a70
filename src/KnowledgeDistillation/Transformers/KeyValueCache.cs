using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers;

/// <summary>
/// The keys and values a decoder has computed so far, per layer, so that generation feeds each new token once instead
/// of the whole sequence again. Create an empty one, pass it to every forward pass of one generation, dispose it after.
/// The tensors are held outside any dispose scope and belong to the cache.
/// </summary>
public sealed class KeyValueCache : IDisposable
{
    private readonly List<(Tensor Keys, Tensor Values)?> _layers = [];

    /// <summary>Number of tokens cached (0 before the first forward pass).</summary>
    public long Length { get; private set; }

    /// <summary>
    /// Appends the keys and values of layer <paramref name="layer"/>'s new tokens (<c>[B, H_kv, S, d]</c>) and returns
    /// all of them, cached and new. The returned tensors belong to the cache.
    /// </summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        while (_layers.Count <= layer) _layers.Add(null);
        Tensor k = keys, v = values;
        if (_layers[layer] is { } old)
        {
            k = cat([old.Keys, keys], 2);
            v = cat([old.Values, values], 2);
            old.Keys.Dispose();
            old.Values.Dispose();
        }
        else
        {
            k = keys.alias();
            v = values.alias();
        }
        k.DetachFromDisposeScope();
        v.DetachFromDisposeScope();
        _layers[layer] = (k, v);
        return (k, v);
    }

    /// <summary>Records that the forward pass that filled every layer added <paramref name="tokens"/> tokens.</summary>
    internal void Advance(long tokens) => Length += tokens;

    /// <summary>Frees every cached tensor.</summary>
    public void Dispose()
    {
        foreach ((Tensor Keys, Tensor Values)? entry in _layers)
        {
            entry?.Keys.Dispose();
            entry?.Values.Dispose();
        }
        _layers.Clear();
        Length = 0;
    }
}
