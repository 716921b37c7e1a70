using KnowledgeDistillation.Pretrained;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>The ONNX guide's end-to-end example is the code in <see cref="OnnxTeacherGuideExample"/>, and it runs.</summary>
public class GuideSnippetTests(RealTextEncoders encoders) : IClassFixture<RealTextEncoders>
{
    private static string RepositoryRoot
    {
        get
        {
            var directory = new DirectoryInfo(AppContext.BaseDirectory);
            while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "KnowledgeDistillation.sln"))) directory = directory.Parent;
            return directory?.FullName ?? throw new InvalidOperationException("The repository root (with KnowledgeDistillation.sln) is not above the test's folder.");
        }
    }

    [Fact]
    public void The_guide_shows_exactly_the_example_that_is_compiled_here()
    {
        string[] source = File.ReadAllLines(Path.Combine(RepositoryRoot, "tests", "KnowledgeDistillation.Onnx.Tests", "OnnxTeacherGuideExample.cs"));
        int begin = Array.FindIndex(source, l => l.Trim() == "// snippet-begin"), end = Array.FindIndex(source, l => l.Trim() == "// snippet-end");
        string[] body = source[(begin + 1)..end];
        int indent = body.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
        string[] code = [.. body.Select(l => l.Length >= indent ? l[indent..] : l.Trim())];

        string[] guide = File.ReadAllLines(Path.Combine(RepositoryRoot, "docs", "onnx.md"));
        int marker = Array.FindIndex(guide, l => l.Trim() == "<!-- snippet: onnx-teacher (tests/KnowledgeDistillation.Onnx.Tests/OnnxTeacherGuideExample.cs) -->");
        marker.Should().BeGreaterThanOrEqualTo(0, "docs/onnx.md marks the example it shares with the tests");
        int open = Array.FindIndex(guide, marker, l => l.StartsWith("```", StringComparison.Ordinal));
        int close = Array.FindIndex(guide, open + 1, l => l.StartsWith("```", StringComparison.Ordinal));
        string[] shown = [.. guide[(open + 1)..close].SkipWhile(l => l.StartsWith("using ", StringComparison.Ordinal) || l.Length == 0)];
        shown.Should().Equal(code);
    }

    [Fact]
    public void The_guide_example_imports_the_real_teacher_and_writes_a_student_that_loads_back()
    {
        string output = Path.Combine(Path.GetTempPath(), $"kd-guide-{Guid.NewGuid():N}");
        Directory.CreateDirectory(output);
        try
        {
            var (ids, imported, student) = OnnxTeacherGuideExample.Run(encoders.MiniLM, "Distillation keeps most of the teacher's quality.", output);
            using var teacherModel = imported.Model;
            using var studentModel = student.Model;
            ids[0].Should().Be(101);
            ids[^1].Should().Be(102);
            imported.Report.Notes.Should().Contain(n => n.Contains("one per word embedding row", StringComparison.Ordinal));
            studentModel.Config.Layers.Should().Be(3);
            new FileInfo(Path.Combine(output, "student.onnx")).Length.Should().BeGreaterThan(1_000_000);
            PretrainedTokenizer.Load(Path.Combine(output, "student")).Encode("Distillation keeps most of the teacher's quality.", maxLength: 128).Should().Equal(ids);
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}
