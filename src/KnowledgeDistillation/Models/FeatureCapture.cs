using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Models;

/// <summary>
/// Captures the outputs of named submodules of any module during its forward pass, through forward hooks, for
/// models whose code cannot be changed to return intermediate states.
/// </summary>
/// <remarks>
/// <para>
/// Names are those of <c>named_modules()</c>, e.g. <c>"1"</c> for the second layer of a <c>Sequential</c> or
/// <c>"encoder.layers.3"</c>. Hooks fire only when a module is invoked through <c>call()</c> — which is what
/// <c>Sequential</c> and well-written modules do — not when a parent calls its <c>forward()</c> directly.
/// </para>
/// <para>
/// Each captured tensor is an alias of the module's output (TorchSharp's <c>Sequential</c> disposes intermediate
/// outputs as it goes, which would otherwise free what was captured). Aliases are created in the dispose scope
/// current during the forward pass and belong to whoever <see cref="Take"/>s them. <see cref="Dispose"/> removes
/// the hooks and frees anything captured but not taken.
/// </para>
/// </remarks>
public sealed class FeatureCapture : IDisposable
{
    private readonly string[] _names;
    private readonly Tensor?[] _captured;
    private readonly List<Action> _removeHooks = [];

    /// <summary>Hooks the submodules of <paramref name="root"/> named <paramref name="moduleNames"/>.</summary>
    /// <exception cref="ArgumentException">A name does not exist, or names a module whose output is not a single tensor.</exception>
    public FeatureCapture(nn.Module root, params string[] moduleNames)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(moduleNames);
        if (moduleNames.Length == 0) throw new ArgumentException("Name at least one submodule to capture.", nameof(moduleNames));

        var modules = root.named_modules().ToDictionary(m => m.name, m => m.module);
        _names = moduleNames;
        _captured = new Tensor?[moduleNames.Length];
        for (int i = 0; i < moduleNames.Length; i++)
        {
            string name = moduleNames[i];
            if (!modules.TryGetValue(name, out nn.Module? module))
            {
                string known = string.Join(", ", modules.Keys.Where(k => k.Length > 0).Take(30));
                throw new ArgumentException($"The module has no submodule named \"{name}\". Its submodules are: {known}{(modules.Count > 31 ? ", ..." : "")}.", nameof(moduleNames));
            }
            if (module is not nn.Module<Tensor, Tensor> hookable)
            {
                throw new ArgumentException(
                    $"Submodule \"{name}\" is a {module.GetType().Name}, not a Module<Tensor, Tensor>; only modules with one tensor output can be captured.",
                    nameof(moduleNames));
            }
            int slot = i;
            var remover = hookable.register_forward_hook((_, _, output) =>
            {
                _captured[slot]?.Dispose(); // a module that runs twice in one pass keeps its last output
                _captured[slot] = output.alias();
                return null!; // keep the module's own output
            });
            _removeHooks.Add(remover.remove);
        }
    }

    /// <summary>The captured module names, in the order <see cref="Take"/> returns their outputs.</summary>
    public IReadOnlyList<string> ModuleNames => _names;

    /// <summary>Hands over the outputs captured since the last call, in <see cref="ModuleNames"/> order.</summary>
    /// <exception cref="InvalidOperationException">A hooked module did not run (or ran without <c>call()</c>).</exception>
    public IReadOnlyList<Tensor> Take()
    {
        int missing = Array.FindIndex(_captured, t => t is null);
        if (missing >= 0)
        {
            string name = _names[missing];
            Clear();
            throw new InvalidOperationException(
                $"Submodule \"{name}\" produced no output in this forward pass. Either it did not run, or its parent invoked its forward() directly; hooks fire only through call().");
        }
        Tensor[] result = _captured.Select(t => t!).ToArray();
        Array.Clear(_captured);
        return result;
    }

    /// <summary>Drops (and frees) anything captured and not taken.</summary>
    public void Clear()
    {
        for (int i = 0; i < _captured.Length; i++)
        {
            _captured[i]?.Dispose();
            _captured[i] = null;
        }
    }

    /// <summary>Removes the hooks and frees untaken captures.</summary>
    public void Dispose()
    {
        foreach (Action remove in _removeHooks) remove();
        _removeHooks.Clear();
        Clear();
    }
}
