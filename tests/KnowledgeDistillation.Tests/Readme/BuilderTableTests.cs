using System.Reflection;
using System.Text.RegularExpressions;
using KnowledgeDistillation.Objectives;

namespace KnowledgeDistillation.Tests.Readme;

/// <summary>docs/trainer.md's table of builder methods lists every public method, with its parameters in order and its defaults.</summary>
public sealed partial class BuilderTableTests
{
    private static readonly MethodInfo[] Methods = typeof(DistillationObjectiveBuilder)
        .GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly);

    /// <summary>Each table row: the method name and its listed parameters, as "name" or "name = default".</summary>
    private static List<(string Method, string[] Parameters)> Rows()
    {
        string doc = File.ReadAllText(Path.Combine(BuildFacts.RepositoryRoot, "docs", "trainer.md"));
        return RowPattern().Matches(doc)
            .Select(m => (m.Groups["method"].Value, m.Groups["parameters"].Value.Length == 0 ? Array.Empty<string>()
                : m.Groups["parameters"].Value.Split(", ").Select(p => p.Trim()).ToArray()))
            .ToList();
    }

    [Fact]
    public void Every_public_builder_method_has_a_row_for_each_of_its_overloads()
    {
        List<(string Method, string[] Parameters)> rows = Rows();
        foreach (MethodInfo method in Methods)
        {
            string[] names = method.GetParameters().Select(p => p.Name!).ToArray();
            rows.Should().Contain(r => r.Method == method.Name && r.Parameters.Select(Name).SequenceEqual(names),
                "docs/trainer.md lists {0}({1})", method.Name, string.Join(", ", names));
        }
    }

    [Fact]
    public void Every_row_names_a_real_method_with_its_defaults()
    {
        List<(string Method, string[] Parameters)> rows = Rows();
        rows.Should().HaveCountGreaterThanOrEqualTo(20);
        foreach ((string method, string[] parameters) in rows)
        {
            MethodInfo? match = Methods.FirstOrDefault(m => m.Name == method && m.GetParameters().Select(p => p.Name!).SequenceEqual(parameters.Select(Name)));
            match.Should().NotBeNull("the row {0}({1}) names a public builder method with exactly those parameters", method, string.Join(", ", parameters));
            foreach ((ParameterInfo info, string listed) in match!.GetParameters().Zip(parameters))
            {
                bool listsDefault = listed.Contains(" = ", StringComparison.Ordinal);
                listsDefault.Should().Be(info.HasDefaultValue, "{0}'s parameter {1} is listed {2}", method, info.Name, listsDefault ? "with a default" : "without one");
                if (!listsDefault) continue;
                if (info.ParameterType == typeof(Schedule) && info.DefaultValue is null && info.Name == "temperature")
                {
                    // null stands for the term's own temperature: read it from a built term.
                    EffectiveTemperature(match).Should().Be(double.Parse(Default(listed), System.Globalization.CultureInfo.InvariantCulture), "{0}'s temperature defaults to the listed value", method);
                    continue;
                }
                Default(listed).Should().Be(Show(info.DefaultValue), "{0}'s {1} defaults to {2}", method, info.Name, Show(info.DefaultValue));
            }
        }
    }

    /// <summary>The temperature at step 0 of the term the method adds with every optional argument left out (required schedules at 0.5).</summary>
    private static double EffectiveTemperature(MethodInfo method)
    {
        object?[] arguments = method.GetParameters().Select(p => p.HasDefaultValue ? p.DefaultValue
            : p.ParameterType == typeof(KnowledgeDistillation.CrossTokenizer.VocabularyMatch) ? SharedByte()
            : (object)Schedule.Constant(0.5)).ToArray();
        var builder = (DistillationObjectiveBuilder)method.Invoke(DistillationObjective.Create(), arguments)!;
        return builder.Build().Terms.Single().Temperature!.ValueAt(0);
    }

    /// <summary>A vocabulary match of one shared token, for a builder method that needs one.</summary>
    private static KnowledgeDistillation.CrossTokenizer.VocabularyMatch SharedByte() => KnowledgeDistillation.CrossTokenizer.VocabularyMatch.Between(
        KnowledgeDistillation.CrossTokenizer.TokenByteStrings.Bytes(), KnowledgeDistillation.CrossTokenizer.TokenByteStrings.Bytes());

    private static string Name(string listed) => listed.Split(" = ")[0];

    private static string Default(string listed) => listed.Split(" = ")[1];

    /// <summary>A default value as the table writes it: numbers in their shortest form, strings quoted, enums by member name.</summary>
    private static string Show(object? value) => value switch
    {
        null => "null",
        string s => $"\"{s}\"",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        Enum e => e.ToString(),
        _ => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)!,
    };

    [GeneratedRegex(@"^\| `(?<method>[A-Z]\w*)\((?<parameters>[^`]*)\)` \|", RegexOptions.Multiline)]
    private static partial Regex RowPattern();
}
