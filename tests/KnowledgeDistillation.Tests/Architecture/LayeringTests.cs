using ArchUnitNET.Domain;
using ArchUnitNET.Loader;
using ArchUnitNET.xUnit;
using KnowledgeDistillation.Training;
using static ArchUnitNET.Fluent.ArchRuleDefinition;
using static ArchUnitNET.Fluent.Slices.SliceRuleDefinition;

namespace KnowledgeDistillation.Tests.Architecture;

/// <summary>
/// The layering of docs/architecture.md, enforced: each namespace of the library lists the namespaces it may use, all
/// of them in lower layers, so a dependency that points upwards — the start of a cycle — fails here, naming the types.
/// </summary>
public sealed class LayeringTests
{
    private const string Root = "KnowledgeDistillation";

    private static readonly ArchUnitNET.Domain.Architecture Library =
        new ArchLoader().LoadAssemblies(typeof(DistillationTrainer<>).Assembly).Build();

    /// <summary>
    /// Bottom to top. A namespace may use the root (internal helpers such as <c>Shapes</c>), itself and its
    /// sub-namespaces, and the namespaces listed here; nothing else of the library.
    /// </summary>
    public static readonly TheoryData<string, string[]> Layers = new()
    {
        { "Runtime", [] },
        { "Formats", [] },
        { "Models", [] },
        { "Losses", ["Models"] },
        { "Transformers", ["Models"] },
        { "Adapters", ["Transformers", "Models"] },
        { "CrossTokenizer", ["Losses", "Models"] },
        { "Pretrained", ["CrossTokenizer", "Adapters", "Transformers", "Models", "Formats"] },
        { "Objectives", ["CrossTokenizer", "Losses", "Models"] },
        { "Students", ["Objectives", "Transformers", "Models"] },
        { "Caching", ["Models", "Formats"] },
        { "Training", ["Objectives", "CrossTokenizer", "Caching", "Losses", "Models", "Formats", "Runtime"] },
        { "Generation", ["Training", "Caching", "Transformers", "Losses", "Models", "Formats"] },
        { "DependencyInjection", ["Training", "Objectives", "Models"] },
    };

    [Theory]
    [MemberData(nameof(Layers))]
    public void A_namespace_uses_only_the_layers_below_it(string layer, string[] allowed)
    {
        string[] forbidden = Layers.Select(row => (string)row[0]).Where(n => n != layer && !allowed.Contains(n)).ToArray();
        string pattern = $@"^{Root}\.({string.Join("|", forbidden)})(\..*)?$";
        Types().That().ResideInNamespaceOrBelow($"{Root}.{layer}")
            .Should().NotDependOnAny(Types().That().ResideInNamespaceMatching(pattern))
            .Because($"{layer} may use only {(allowed.Length == 0 ? "the root namespace" : string.Join(", ", allowed))} (docs/architecture.md)")
            .Check(Library);
    }

    [Fact]
    public void The_root_namespace_uses_no_other_namespace_of_the_library()
    {
        Types().That().ResideInNamespace(Root)
            .Should().NotDependOnAny(Types().That().ResideInNamespaceMatching($@"^{Root}\..+$"))
            .Check(Library);
    }

    [Fact]
    public void The_namespaces_are_free_of_cycles()
    {
        Slices().Matching($"{Root}.(*)..").Should().BeFreeOfCycles().Check(Library);
    }

    [Fact]
    public void Every_namespace_of_the_library_has_its_place_in_the_layers()
    {
        string[] placed = Layers.Select(row => (string)row[0]).ToArray();
        IEnumerable<string> unplaced = Library.Namespaces.Select(n => n.FullName)
            .Where(n => n.StartsWith(Root + ".", StringComparison.Ordinal))
            .Select(n => n[(Root.Length + 1)..].Split('.')[0])
            .Distinct()
            .Where(n => !placed.Contains(n));
        unplaced.Should().BeEmpty("a new namespace is placed in the layering (LayeringTests.Layers and docs/architecture.md) when it is added");
        Library.Namespaces.Should().Contain(n => n.FullName == $"{Root}.Training", "the rules must see the library's types");
    }
}
