using KnowledgeDistillation.Build;

namespace KnowledgeDistillation.Tests.NativeCompatibility;

/// <summary>
/// Runs real <c>dotnet build</c>s of a small project that imports the package's targets and receives a synthetic
/// libLibTorchSharp.so the way NuGet delivers the real one (a copy-local reference file), to check the step in
/// MSBuild itself: after a fresh build, after an incremental rebuild that re-copies the original, with the opt-out,
/// and on a host whose libstdc++ already has the version.
/// </summary>
[Trait("Category", "Slow")] // builds consumer projects with MSBuild: about 60 s; .ci/run runs it
public class MsBuildTargetTests
{
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(3);

    [Fact]
    public void Output_copy_is_patched_after_a_fresh_build_and_after_an_incremental_rebuild()
    {
        using var project = new ConsumerProject(ElfSamples.Gcc12Versions);

        project.Build().Should().Contain("marked that requirement weak");
        project.OutputIsWeak().Should().BeTrue();
        project.SourceIsUnchanged().Should().BeTrue();

        // The package file now looks newer than the patched copy, as after a package restore: the copy is refreshed.
        File.SetLastWriteTimeUtc(project.Source, DateTime.UtcNow.AddMinutes(1));
        project.Build();
        project.OutputIsWeak().Should().BeTrue();

        // Nothing changed: the patched copy kept the package file's date, so MSBuild sees it as up to date.
        string log = project.Build();
        log.Should().NotContain("Copying file from \"" + project.Source).And.NotContain("marked that requirement weak");
        project.OutputIsWeak().Should().BeTrue();
        project.SourceIsUnchanged().Should().BeTrue();
    }

    [Fact]
    public void Nothing_is_touched_on_a_host_that_has_the_version_or_when_opted_out()
    {
        using var modern = new ConsumerProject(ElfSamples.Gcc13Versions);
        modern.Build();
        modern.OutputIsWeak().Should().BeFalse();

        using var optedOut = new ConsumerProject(ElfSamples.Gcc12Versions);
        optedOut.Build("-p:KnowledgeDistillationNativeCompatibility=false").Should().NotContain("marked that requirement weak");
        optedOut.OutputIsWeak().Should().BeFalse();
    }

    [Fact]
    public void An_unsafe_library_fails_the_build_with_a_clear_message()
    {
        using var project = new ConsumerProject(ElfSamples.Gcc12Versions, ElfSamples.LibTorchSharpLike().Symbol("_ZNSt8__format5__tzdbEv", 4));

        string log = project.Build(expectSuccess: false);

        log.Should().Contain("native compatibility step failed").And.Contain("_ZNSt8__format5__tzdbEv");
        project.SourceIsUnchanged().Should().BeTrue();
    }

    private sealed class ConsumerProject : IDisposable
    {
        private readonly TemporaryFolder _folder = new();
        private readonly byte[] _sourceBytes;

        public ConsumerProject(string[] hostVersions, SyntheticElf? library = null)
        {
            _sourceBytes = (library ?? ElfSamples.LibTorchSharpLike()).Build();
            Source = _folder.Write("package-cache/libLibTorchSharp.so", _sourceBytes);
            string host = _folder.Write("host/libstdc++.so.6", ElfSamples.HostLibStdCxx(hostVersions));
            string targets = Path.Combine(BuildFacts.RepositoryRoot, "src", "KnowledgeDistillation", "buildTransitive", "KnowledgeDistillation.targets");
            _folder.Write("consumer/Consumer.csproj", System.Text.Encoding.UTF8.GetBytes($"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <TargetFramework>net10.0</TargetFramework>
                    <KnowledgeDistillationHostLibStdCxx>{host}</KnowledgeDistillationHostLibStdCxx>
                  </PropertyGroup>
                  <Target Name="AddNativeLikeNuGetDoes" AfterTargets="ResolveAssemblyReferences">
                    <ItemGroup>
                      <ReferenceCopyLocalPaths Include="{Source}" DestinationSubDirectory="runtimes/linux-x64/native/" />
                    </ItemGroup>
                  </Target>
                  <Import Project="{targets}" />
                </Project>
                """));
        }

        public string Source { get; }

        private string Output => _folder.PathOf("consumer/bin/Debug/net10.0/runtimes/linux-x64/native/libLibTorchSharp.so");

        public bool OutputIsWeak() =>
            ElfDynamicImage.Parse(File.ReadAllBytes(Output), Output).Requirements.Single(r => r.Version == ElfSamples.Glibcxx32).IsWeak;

        public bool SourceIsUnchanged() => File.ReadAllBytes(Source).SequenceEqual(_sourceBytes);

        public string Build(string extraArgument = "-p:Unused=1", bool expectSuccess = true)
        {
            var (exitCode, stdout, stderr) = DotnetProcess.Run(_folder.PathOf("consumer"), BuildTimeout,
                "build", "-nodeReuse:false", "--disable-build-servers", "-p:UseSharedCompilation=false", "-v:n", extraArgument);
            string log = stdout + stderr;
            (exitCode == 0).Should().Be(expectSuccess, "the build log was:\n{0}", log);
            return log;
        }

        public void Dispose() => _folder.Dispose();
    }
}
