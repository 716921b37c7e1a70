using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Transformers.Checkpoints;

/// <summary>
/// How each tensor of one of our models is built from the tensors of a checkpoint with other names: a plan of
/// sources (one or more checkpoint names and a transform), applied all-or-nothing.
/// </summary>
internal sealed class CheckpointMapping
{
    private readonly Dictionary<string, Source> _plan = new(StringComparer.Ordinal);
    private readonly List<Func<string, bool>> _ignored = [];
    private readonly string[] _prefixes;
    private readonly Dictionary<string, string> _aliases;

    /// <param name="prefixes">Prefixes a checkpoint may put before every name (e.g. "transformer."), tried in order, then none.</param>
    /// <param name="aliases">Name endings that older checkpoints use instead (".gamma" for ".weight").</param>
    public CheckpointMapping(string[] prefixes, Dictionary<string, string> aliases)
    {
        _prefixes = prefixes;
        _aliases = aliases;
    }

    private sealed record Source(string[] Names, Func<Tensor[], Tensor> Build, string Transform);

    public void Same(string ours, string theirs) => _plan[ours] = new Source([theirs], t => t[0], "copied");

    /// <summary>Conv1D-style weights stored as [in, out], where a Linear holds [out, in].</summary>
    public void Transposed(string ours, string theirs) => _plan[ours] = new Source([theirs], t => t[0].t(), "transposed");

    public void Concatenated(string ours, params string[] theirs) => _plan[ours] = new Source(theirs, t => cat(t, 0), "concatenated along dimension 0");

    public void Ignore(Func<string, bool> isIgnored) => _ignored.Add(isIgnored);

    /// <summary>Builds every tensor of <paramref name="model"/>, checks every shape, and only then writes them.</summary>
    /// <exception cref="InvalidDataException">Entries are missing or have other shapes; the model is unchanged.</exception>
    public CheckpointLoadReport Apply(nn.Module model, IReadOnlyDictionary<string, Tensor> checkpoint, string kind)
    {
        var problems = new List<string>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        var staged = new List<(Tensor Target, Tensor Value, string Name)>();
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            foreach ((string name, Tensor target) in model.state_dict())
            {
                if (!_plan.TryGetValue(name, out Source? source))
                {
                    throw new InvalidOperationException($"No {kind} checkpoint mapping for the model's tensor {name}.");
                }
                string?[] found = source.Names.Select(n => Find(checkpoint, n)).ToArray();
                int missing = Array.IndexOf(found, null);
                if (missing >= 0)
                {
                    problems.Add($"missing {source.Names[missing]} (for {name})");
                    continue;
                }
                used.UnionWith(found!);
                Tensor value = source.Build(found.Select(n => checkpoint[n!]).ToArray());
                if (!value.shape.SequenceEqual(target.shape))
                {
                    string from = string.Join(" + ", found.Select(n => $"{n} {Shapes.Describe(checkpoint[n!].shape)}"));
                    problems.Add($"{from} {source.Transform} gives {Shapes.Describe(value.shape)}, but the model's {name} is {Shapes.Describe(target.shape)}");
                    continue;
                }
                staged.Add((target, value, name));
            }

            if (problems.Count > 0)
            {
                throw new InvalidDataException(
                    $"The {kind} checkpoint does not fit this model ({problems.Count} problem(s); the model was not changed): " +
                    string.Join("; ", problems.Take(10)) + (problems.Count > 10 ? "; ..." : "") +
                    ". Check that the model's configuration (VocabSize, ContextLength, Width, Heads, Layers, FeedForwardWidth) matches the checkpoint's.");
            }
            foreach ((Tensor target, Tensor value, _) in staged) target.copy_(value);
        }

        string[] rest = checkpoint.Keys.Where(k => !used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToArray();
        string[] ignored = rest.Where(k => _ignored.Any(ignore => ignore(StripPrefix(k)))).ToArray();
        return new CheckpointLoadReport(staged.Select(s => s.Name).ToArray(), rest.Except(ignored).ToArray(), ignored);
    }

    private string? Find(IReadOnlyDictionary<string, Tensor> checkpoint, string name)
    {
        foreach (string candidate in Candidates(name))
        {
            foreach (string prefix in _prefixes.Append(""))
            {
                if (checkpoint.ContainsKey(prefix + candidate)) return prefix + candidate;
            }
        }
        return null;
    }

    private IEnumerable<string> Candidates(string name)
    {
        yield return name;
        foreach ((string ending, string alias) in _aliases)
        {
            if (name.EndsWith(ending, StringComparison.Ordinal)) yield return name[..^ending.Length] + alias;
        }
    }

    private string StripPrefix(string name) =>
        _prefixes.FirstOrDefault(p => name.StartsWith(p, StringComparison.Ordinal)) is { } prefix ? name[prefix.Length..] : name;

}
