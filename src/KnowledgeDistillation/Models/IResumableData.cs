namespace KnowledgeDistillation.Models;

/// <summary>
/// An epoch's data that can start part-way through without producing the micro-batches before that point. On resume
/// the trainer otherwise replays the micro-batches a checkpoint had consumed in its epoch, which for data made while
/// it is read (a student generating on-policy completions, say) means making them all again only to skip them.
/// </summary>
/// <typeparam name="TInput">What the models take.</typeparam>
public interface IResumableData<TInput> : IEnumerable<DistillationBatch<TInput>>
{
    /// <summary>
    /// How many micro-batches the data holds, when that is known without producing them; null otherwise. A trainer
    /// planning its steps from <c>Epochs</c> reads this instead of enumerating the data once to count it.
    /// </summary>
    long? MicroBatchCount { get; }

    /// <summary>
    /// The same micro-batches as enumerating this data, from the one at <paramref name="microBatches"/> (0-based) on.
    /// Whatever the data draws from torch's RNG to pass over the first <paramref name="microBatches"/> must be drawn
    /// when the enumerator is created (<c>GetEnumerator</c>), not at its first <c>MoveNext</c>: the trainer restores the
    /// checkpoint's RNG state between the two, as it does after replaying.
    /// </summary>
    /// <exception cref="InvalidOperationException">The data holds fewer than <paramref name="microBatches"/> micro-batches.</exception>
    IEnumerable<DistillationBatch<TInput>> StartingAt(long microBatches);
}
