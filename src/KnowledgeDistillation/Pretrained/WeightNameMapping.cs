using KnowledgeDistillation.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Pretrained;

/// <summary>How a checkpoint's tensors make one of ours.</summary>
internal enum SourceLayout
{
    /// <summary>The same tensor.</summary>
    Same,

    /// <summary>Its transpose (a Conv1D weight stored [in, out]).</summary>
    Transposed,

    /// <summary>Several tensors stacked along dimension 0 (separate query, key and value projections for our fused one).</summary>
    Concatenated,
}

/// <summary>
/// How each tensor of one of our models corresponds to tensors of a checkpoint with other (Hugging Face) names: a
/// plan of sources (one or more checkpoint names, a transform and its inverse), applied all-or-nothing when loading
/// and inverted when saving.
/// </summary>
internal sealed class WeightNameMapping
{
    private readonly Dictionary<string, Source> _plan = new(StringComparer.Ordinal);
    private readonly List<Func<string, bool>> _ignored = [];
    private readonly List<(string Name, string SameAs, string Setting)> _tied = [];
    private readonly string _backbonePrefix;
    private readonly string[] _prefixes;
    private readonly Dictionary<string, string> _aliases;

    /// <param name="backbonePrefix">The prefix Hugging Face writes before backbone names ("transformer.", "bert.", "model."), or "".</param>
    /// <param name="aliases">Name endings that older checkpoints use instead (".gamma" for ".weight").</param>
    public WeightNameMapping(string backbonePrefix, Dictionary<string, string>? aliases = null)
    {
        _backbonePrefix = backbonePrefix;
        _prefixes = backbonePrefix.Length > 0 ? [backbonePrefix] : [];
        _aliases = aliases ?? [];
    }

    private sealed record Source(string[] Names, Func<Tensor[], Tensor> Build, Func<Tensor, Tensor[]> Split, string Transform, bool Optional, bool Head, SourceLayout Layout = SourceLayout.Same);

    /// <summary>Our tensor is the checkpoint's; <paramref name="head"/> names sit outside the backbone prefix; an <paramref name="optional"/> one may be absent (left as initialised).</summary>
    public void Same(string ours, string theirs, bool head = false, bool optional = false) =>
        _plan[ours] = new Source([theirs], t => t[0], t => [t], "copied", optional, head);

    /// <summary>Conv1D-style weights stored as [in, out], where a Linear holds [out, in].</summary>
    public void Transposed(string ours, string theirs) =>
        _plan[ours] = new Source([theirs], t => t[0].t(), t => [t.t()], "transposed", false, false, SourceLayout.Transposed);

    /// <summary>Our tensor is the checkpoint's tensors stacked along dimension 0 (equal parts).</summary>
    public void Concatenated(string ours, params string[] theirs) =>
        _plan[ours] = new Source(theirs, t => cat(t, 0), t => t.chunk(theirs.Length, 0), "concatenated along dimension 0", false, false, SourceLayout.Concatenated);

    /// <summary>The checkpoint's names for our tensor <paramref name="ours"/> (full, with the backbone prefix) and how they make it; null when unmapped.</summary>
    public (string[] Names, SourceLayout Layout)? Describe(string ours) =>
        _plan.TryGetValue(ours, out Source? source) ? (source.Names.Select(n => FullName(source, n)).ToArray(), source.Layout) : null;

    /// <summary>A checkpoint entry the model does not hold because it is tied to <paramref name="sameAs"/>: accepted when equal to it, refused when not.</summary>
    public void Tied(string name, string sameAs, string setting) => _tied.Add((name, sameAs, setting));

    public void Ignore(Func<string, bool> isIgnored) => _ignored.Add(isIgnored);

    /// <summary>Builds every tensor of <paramref name="model"/>, checks every shape, and only then writes them.</summary>
    /// <exception cref="InvalidDataException">Entries are missing or have other shapes, or a tied entry differs; the model is unchanged.</exception>
    public WeightLoadReport Apply(nn.Module model, IReadOnlyDictionary<string, Tensor> checkpoint, string kind)
    {
        var problems = new List<string>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        var staged = new List<(Tensor Target, Tensor Value, string Name)>();
        var initialized = new List<string>();
        var tiedChecked = new List<string>();
        bool shapeProblem = false;
        IReadOnlyDictionary<string, LoraLayer> adapters = Lora.LayersOf(model);
        if (adapters.Values.FirstOrDefault(a => a.IsMerged) is { } merged)
        {
            throw new InvalidOperationException($"The LoRA adapter of {merged.Name} is merged into its weight; unmerge the adapters before loading base weights under them.");
        }
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            foreach ((string name, Tensor target) in model.state_dict())
            {
                // A base checkpoint has no adapters: they keep their values.
                if (Lora.IsAdapterTensor(name, adapters)) continue;
                if (!_plan.TryGetValue(name, out Source? source))
                {
                    throw new InvalidOperationException($"No {kind} checkpoint mapping for the model's tensor {name}.");
                }
                string?[] found = source.Names.Select(n => Find(checkpoint, n)).ToArray();
                int missing = Array.IndexOf(found, null);
                if (missing >= 0)
                {
                    if (source.Optional && found.All(f => f is null)) initialized.Add(name);
                    else problems.Add($"missing {FullName(source, source.Names[missing])} (for {name})");
                    continue;
                }
                used.UnionWith(found!);
                // A floating-point weight stored as integers (or a buffer of ids stored as floats) is a damaged or mislabelled
                // file: copy_ would convert the values silently.
                string? wrongKind = found.FirstOrDefault(n => is_floating_point(checkpoint[n!]) != is_floating_point(target) || (checkpoint[n!].dtype == ScalarType.Bool) != (target.dtype == ScalarType.Bool));
                if (wrongKind is not null)
                {
                    problems.Add($"{wrongKind} is stored as {checkpoint[wrongKind].dtype}, but the model's {name} is {target.dtype}");
                    continue;
                }
                Tensor value = source.Build(found.Select(n => checkpoint[n!]).ToArray());
                if (!value.shape.SequenceEqual(target.shape))
                {
                    string from = string.Join(" + ", found.Select(n => $"{n} {Shapes.Describe(checkpoint[n!].shape)}"));
                    problems.Add($"{from} {source.Transform} gives {Shapes.Describe(value.shape)}, but the model's {name} is {Shapes.Describe(target.shape)}");
                    shapeProblem = true;
                    continue;
                }
                staged.Add((target, value, name));
            }

            foreach ((string tied, string sameAs, string setting) in _tied)
            {
                string? entry = Find(checkpoint, tied), partner = Find(checkpoint, sameAs);
                if (entry is null || partner is null) continue;
                Tensor a = checkpoint[entry], b = checkpoint[partner];
                if (!a.shape.SequenceEqual(b.shape) || !a.to(ScalarType.Float64).eq(b.to(ScalarType.Float64)).all().item<bool>())
                {
                    double gap = a.shape.SequenceEqual(b.shape) ? (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>() : double.NaN;
                    problems.Add($"the checkpoint has its own {entry}, which differs from {partner} (max |difference| {gap:G3}), but the model ties them ({setting}); " +
                        "build the model with untied embeddings, or load it with PretrainedFolder.Load, which reads tie_word_embeddings from config.json");
                    continue;
                }
                used.Add(entry);
                tiedChecked.Add(entry);
            }

            if (problems.Count > 0)
            {
                throw new InvalidDataException(
                    $"The {kind} checkpoint does not fit this model ({problems.Count} problem(s); the model was not changed): " +
                    string.Join("; ", problems.Take(10)) + (problems.Count > 10 ? "; ..." : "") + "." +
                    (shapeProblem ? " Check that the model's configuration (VocabSize, ContextLength, Width, Heads, Layers, FeedForwardWidth) matches the checkpoint's." : ""));
            }
            foreach ((Tensor target, Tensor value, _) in staged) target.copy_(value);
        }

        string[] rest = checkpoint.Keys.Where(k => !used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToArray();
        string[] ignored = rest.Where(k => _ignored.Any(ignore => ignore(StripPrefix(k)))).ToArray();
        return new WeightLoadReport(staged.Select(s => s.Name).ToArray(), rest.Except(ignored).ToArray(), ignored.Concat(tiedChecked).Order(StringComparer.Ordinal).ToArray())
        {
            Initialized = initialized,
        };
    }

    /// <summary>The model's tensors under the checkpoint's full names and layouts (new tensors; the caller disposes them).</summary>
    /// <remarks>A model with LoRA adapters is exported merged: each adapted weight as W + (α / r) · B A, no adapter tensors.</remarks>
    public Dictionary<string, Tensor> Export(nn.Module model)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            foreach ((string name, Tensor tensor) in Lora.MergedStateDict(model))
            {
                if (!_plan.TryGetValue(name, out Source? source))
                {
                    throw new InvalidOperationException($"No checkpoint mapping for the model's tensor {name}.");
                }
                Tensor[] parts = source.Split(tensor.detach());
                for (int i = 0; i < parts.Length; i++) result[FullName(source, source.Names[i])] = parts[i].contiguous().clone().MoveToOuterDisposeScope();
            }
        }
        return result;
    }

    private string FullName(Source source, string name) => source.Head ? name : _backbonePrefix + name;

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
