namespace KnowledgeDistillation.Tests.NativeCompatibility;

/// <summary>
/// An application outside this repository that references src/KnowledgeDistillation by ProjectReference (neither the
/// package's buildTransitive targets nor this repository's Directory.Build.targets reach it) builds and runs a loss
/// on the real TorchSharp native library.
/// </summary>
[Trait("Category", "Slow")] // builds and runs a consumer application: about 20 s; .ci/run runs it
public class ProjectReferenceConsumerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    [Fact]
    public void An_application_referencing_the_project_loads_TorchSharp_and_computes_a_loss()
    {
        using var folder = new TemporaryFolder();
        string library = Path.Combine(BuildFacts.RepositoryRoot, "src", "KnowledgeDistillation", "KnowledgeDistillation.csproj");
        folder.Write("app/App.csproj", System.Text.Encoding.UTF8.GetBytes($"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <ProjectReference Include="{library}" />
                <PackageReference Include="TorchSharp-cpu" Version="0.107.0" />
              </ItemGroup>
            </Project>
            """));
        folder.Write("app/Program.cs", System.Text.Encoding.UTF8.GetBytes("""
            using KnowledgeDistillation.Losses;
            using static TorchSharp.torch;
            // KL(teacher || student) of two fixed rows at T = 1: a value computed by hand below.
            var loss = new SoftTargetKLLoss(1.0, scaleByTemperatureSquared: false);
            Tensor student = tensor(new float[] { 0, 0 }, 1, 2), teacher = tensor(new float[] { 0, (float)Math.Log(3) }, 1, 2);
            Console.WriteLine($"loss={loss.call(student, teacher).item<float>():R}");
            """));

        Run(folder.PathOf("app"), "build", "-nodeReuse:false", "--disable-build-servers", "-p:UseSharedCompilation=false", "-v:q");
        string output = Run(folder.PathOf("app"), "bin/Debug/net10.0/App.dll");

        // p_teacher = (1/4, 3/4), p_student = (1/2, 1/2): KL = 1/4 ln(1/2) + 3/4 ln(3/2).
        double expected = 0.25 * Math.Log(0.5) + 0.75 * Math.Log(1.5);
        double value = double.Parse(output.Trim().Split('=')[1], System.Globalization.CultureInfo.InvariantCulture);
        value.Should().BeApproximately(expected, 1e-6);
    }

    private static string Run(string directory, params string[] arguments)
    {
        var (exitCode, stdout, stderr) = DotnetProcess.Run(directory, Timeout, arguments);
        exitCode.Should().Be(0, "dotnet {0} printed:\n{1}", string.Join(' ', arguments), stdout + stderr);
        return stdout;
    }
}
