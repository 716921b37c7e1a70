using System.Collections;
using System.Globalization;

namespace KnowledgeDistillation.Caching;

/// <summary>
/// Shard <see cref="Index"/> of <see cref="Count"/>: one process's part of labelling a transfer set with a slow
/// teacher. Shard i covers the contiguous examples [⌊i·E/N⌋, ⌊(i+1)·E/N⌋) of E, so the shards tile the set in order;
/// each process writes its range as an ordinary cache at <see cref="PathFor"/>, and <see cref="TeacherCache.Merge"/>
/// (or <see cref="TeacherCache.Open"/> over all the shard paths) joins them. Array-job engines say which shard a
/// process is: see <see cref="FromEnvironment"/>.
/// </summary>
public readonly record struct TeacherCacheShard
{
    /// <summary>Environment variable holding a whole shard as <c>i/N</c>; read first.</summary>
    public const string ShardVariable = "KD_SHARD";

    /// <summary>Environment variable holding the shard count next to Kubernetes' <c>JOB_COMPLETION_INDEX</c> (Kubernetes does not export the job's completions).</summary>
    public const string CountVariable = "KD_SHARD_COUNT";

    /// <summary>Creates shard <paramref name="index"/> of <paramref name="count"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The count is below 1 or the index outside [0, count).</exception>
    public TeacherCacheShard(int index, int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, $"The shard count must be at least 1; got {count}.");
        if (index < 0 || index >= count) throw new ArgumentOutOfRangeException(nameof(index), index, $"The shard index must lie in [0, {count}); got {index}.");
        Index = index;
        Count = count;
    }

    /// <summary>This shard's position, from 0.</summary>
    public int Index { get; }

    /// <summary>How many shards the set is split into.</summary>
    public int Count { get; }

    /// <summary>Parses <c>i/N</c>, e.g. <c>0/4</c> … <c>3/4</c>.</summary>
    /// <exception cref="FormatException">The text is not two integers separated by a slash, or the index is outside [0, N).</exception>
    public static TeacherCacheShard Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] parts = text.Split('/');
        if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int index)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int count) && count >= 1 && index < count)
        {
            return new TeacherCacheShard(index, count);
        }
        throw new FormatException($"A shard is written i/N with 0 <= i < N (e.g. 0/4); got \"{text}\".");
    }

    /// <summary>
    /// The shard an array-job engine assigned to this process, or null when none did. In order:
    /// <list type="bullet">
    /// <item><c>KD_SHARD=i/N</c>, set by hand or by any scheduler;</item>
    /// <item>Kubernetes Indexed Jobs: <c>JOB_COMPLETION_INDEX</c> (set by Kubernetes) with <c>KD_SHARD_COUNT</c> (set in the pod template to the job's <c>completions</c>);</item>
    /// <item>Slurm job arrays: (<c>SLURM_ARRAY_TASK_ID</c> − <c>SLURM_ARRAY_TASK_MIN</c>) / <c>SLURM_ARRAY_TASK_STEP</c> of <c>SLURM_ARRAY_TASK_COUNT</c>, so <c>--array=1-8</c>, <c>--array=0-7</c> and <c>--array=0-14:2</c> all give shards 0 … 7 of 8.</item>
    /// </list>
    /// </summary>
    /// <param name="environment">The variables to read; the process environment when null.</param>
    /// <exception cref="FormatException">A variable is present but malformed; the message names it.</exception>
    public static TeacherCacheShard? FromEnvironment(IReadOnlyDictionary<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables().Cast<DictionaryEntry>().ToDictionary(e => (string)e.Key, e => (string?)e.Value, StringComparer.Ordinal);
        string? Get(string name) => environment.TryGetValue(name, out string? value) && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;
        int Number(string name)
        {
            string text = Get(name)!;
            return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : throw new FormatException($"{name} must be a non-negative integer; got \"{text}\".");
        }
        TeacherCacheShard Checked(int index, int count, string source) => count >= 1 && index < count
            ? new TeacherCacheShard(index, count)
            : throw new FormatException($"{source} gives shard {index} of {count}; the index must lie in [0, count).");

        if (Get(ShardVariable) is { } shard)
        {
            try { return Parse(shard); }
            catch (FormatException e) { throw new FormatException($"{ShardVariable}: {e.Message}", e); }
        }
        if (Get("JOB_COMPLETION_INDEX") is not null)
        {
            if (Get(CountVariable) is null) throw new FormatException($"JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but {CountVariable} is not; set it to the job's completions in the pod template.");
            return Checked(Number("JOB_COMPLETION_INDEX"), Number(CountVariable), $"JOB_COMPLETION_INDEX with {CountVariable}");
        }
        if (Get("SLURM_ARRAY_TASK_ID") is not null && Get("SLURM_ARRAY_TASK_COUNT") is not null)
        {
            int minimum = Get("SLURM_ARRAY_TASK_MIN") is null ? 0 : Number("SLURM_ARRAY_TASK_MIN");
            int step = Get("SLURM_ARRAY_TASK_STEP") is null ? 1 : Number("SLURM_ARRAY_TASK_STEP");
            int offset = Number("SLURM_ARRAY_TASK_ID") - minimum;
            if (step < 1 || offset % step != 0)
            {
                throw new FormatException($"SLURM_ARRAY_TASK_ID {Get("SLURM_ARRAY_TASK_ID")} is not SLURM_ARRAY_TASK_MIN {minimum} plus a multiple of SLURM_ARRAY_TASK_STEP {step}.");
            }
            return Checked(offset / step, Number("SLURM_ARRAY_TASK_COUNT"), "SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_STEP and SLURM_ARRAY_TASK_COUNT");
        }
        return null;
    }

    /// <summary>The examples of <paramref name="examples"/> this shard labels: the first index and how many.</summary>
    /// <exception cref="InvalidOperationException">This is <c>default(TeacherCacheShard)</c>, which is no shard.</exception>
    public (long Start, long Length) RangeOf(long examples)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(examples);
        RequireCreated();
        // In 128-bit arithmetic: examples · (i + 1) can pass 2⁶³ for large sets.
        long start = (long)((Int128)examples * Index / Count), end = (long)((Int128)examples * (Index + 1) / Count);
        return (start, end - start);
    }

    /// <summary>This shard's file next to the merged cache: <c>{cachePath}.shard-{i}-of-{N}</c>.</summary>
    /// <exception cref="InvalidOperationException">This is <c>default(TeacherCacheShard)</c>, which is no shard.</exception>
    public string PathFor(string cachePath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(cachePath);
        RequireCreated();
        return $"{cachePath}.shard-{Index}-of-{Count}";
    }

    /// <summary>The files of all <paramref name="count"/> shards of <paramref name="cachePath"/>, in order: what <see cref="TeacherCache.Merge"/> takes.</summary>
    public static IReadOnlyList<string> PathsFor(string cachePath, int count) =>
        [.. Enumerable.Range(0, count).Select(i => new TeacherCacheShard(i, count).PathFor(cachePath))];

    /// <inheritdoc />
    public override string ToString() => $"{Index}/{Count}";

    private void RequireCreated()
    {
        if (Count == 0) throw new InvalidOperationException("default(TeacherCacheShard) is not a shard; create one with new TeacherCacheShard(index, count), Parse or FromEnvironment.");
    }
}
