using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Students;

/// <summary>
/// Initialises a student from a teacher: the student's layer j (in the <c>ModuleList</c> named by the caller)
/// receives every parameter and buffer of the teacher's layer <c>teacherLayers[j]</c>, and every other student
/// tensor receives the teacher tensor of the same name. Tensors are copied (never shared), so training the student
/// leaves the teacher untouched. What cannot be copied — missing in the teacher, or another shape — is left as
/// initialised and listed in the <see cref="TransferReport"/>.
/// </summary>
public static class WeightTransfer
{
    /// <summary>Copies teacher tensors into <paramref name="student"/>.</summary>
    /// <param name="teacher">The source; not modified.</param>
    /// <param name="student">The destination.</param>
    /// <param name="layerList">The name of the <c>ModuleList</c> holding the layers in both models, e.g. <c>"blocks"</c> or <c>"encoder.layers"</c>.</param>
    /// <param name="teacherLayers">For each student layer, the teacher layer it copies (see <see cref="LayerSelection"/>).</param>
    /// <exception cref="ArgumentException">The list is missing or is not a <c>ModuleList</c>, or the layer map does not fit the two lists.</exception>
    public static TransferReport Copy(nn.Module teacher, nn.Module student, string layerList, IReadOnlyList<int> teacherLayers)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(student);
        ArgumentException.ThrowIfNullOrEmpty(layerList);
        ArgumentNullException.ThrowIfNull(teacherLayers);
        int teacherCount = LayerCount(teacher, layerList, nameof(teacher));
        int studentCount = LayerCount(student, layerList, nameof(student));
        if (teacherLayers.Count != studentCount)
        {
            throw new ArgumentException($"The layer map has {teacherLayers.Count} entries but the student's \"{layerList}\" has {studentCount} layers.", nameof(teacherLayers));
        }
        int bad = teacherLayers.ToList().FindIndex(i => i < 0 || i >= teacherCount);
        if (bad >= 0)
        {
            throw new ArgumentException($"Student layer {bad} maps to teacher layer {teacherLayers[bad]}, but the teacher's \"{layerList}\" has layers 0 to {teacherCount - 1}.", nameof(teacherLayers));
        }

        var copied = new List<CopiedTensor>();
        var skipped = new List<SkippedTensor>();
        using var scope = NewDisposeScope();
        Dictionary<string, Tensor> source = teacher.state_dict();
        using (no_grad())
        {
            foreach ((string name, Tensor target) in student.state_dict())
            {
                string from = SourceName(name, layerList, teacherLayers);
                if (!source.TryGetValue(from, out Tensor? value))
                {
                    skipped.Add(new SkippedTensor(name, from, TransferSkipReason.Missing, "the teacher has no such tensor"));
                }
                else if (!value.shape.SequenceEqual(target.shape))
                {
                    skipped.Add(new SkippedTensor(name, from, TransferSkipReason.ShapeMismatch, $"teacher {Shapes.Describe(value.shape)}, student {Shapes.Describe(target.shape)}"));
                }
                else
                {
                    target.copy_(value);
                    copied.Add(new CopiedTensor(name, from));
                }
            }
        }
        return new TransferReport(teacherLayers.ToArray(), copied, skipped);
    }

    private static string SourceName(string name, string layerList, IReadOnlyList<int> teacherLayers)
    {
        string prefix = layerList + ".";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return name;
        string rest = name[prefix.Length..];
        int dot = rest.IndexOf('.');
        if (dot < 0 || !int.TryParse(rest.AsSpan(0, dot), out int studentLayer)) return name;
        return $"{prefix}{teacherLayers[studentLayer]}{rest[dot..]}";
    }

    private static int LayerCount(nn.Module model, string layerList, string parameter)
    {
        nn.Module? list = model.named_modules().Where(m => m.name == layerList).Select(m => m.module).FirstOrDefault();
        if (list is null)
        {
            string known = string.Join(", ", model.named_modules().Select(m => m.name).Where(n => n.Length > 0 && !n.Contains('.')).Take(20));
            throw new ArgumentException($"The {parameter} has no submodule \"{layerList}\"; its top-level submodules are: {known}.", parameter);
        }
        if (!list.GetType().IsGenericType || list.GetType().GetGenericTypeDefinition() != typeof(ModuleList<>))
        {
            throw new ArgumentException($"The {parameter}'s \"{layerList}\" is a {list.GetType().Name}, not a ModuleList.", parameter);
        }
        return list.children().Count();
    }

}
