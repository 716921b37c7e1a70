using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>
/// The crash-restart loop for real: a training process (tests/KnowledgeDistillation.CrashHarness) kills itself with
/// SIGKILL at chosen points — after a step, at each point of a checkpoint write, after a write, while a checkpoint of
/// the same step is being replaced — and is started again with ResumeFromLatest until it finishes. Each kill lands
/// exactly where it is aimed (the harness kills itself from the write's own hook), so nothing depends on timing. Every
/// restart must resume from the step the kill left on disk, clean up what the kill left, and the final weights must
/// equal, byte for byte, those of a run never killed.
/// </summary>
public class CrashResumeTests(ITestOutputHelper output)
{
    private const int Steps = 24;
    private const int Killed = 137; // 128 + SIGKILL
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5); // a hang guard only: each run takes a few seconds

    /// <summary>One start of the harness: where it kills itself, and what the start must show.</summary>
    private sealed record Cycle(long KillStep, string KillPoint, long FirstStep, string? Warning = null, string? ResumeFrom = null);

    private static readonly Cycle[] Schedule =
    [
        new(3, "after-step", FirstStep: 1), // a fresh start: ResumeFromLatest finds no checkpoint
        new(6, "StudentWritten", FirstStep: 3), // step 3 was trained but its checkpoint never written: redone from 2
        new(9, "ManifestWritten", FirstStep: 6, Warning: "Removed"), // the half-written step 6 is removed, resume from 5
        new(12, "Renamed", FirstStep: 9, Warning: "Removed"), // the complete but never renamed step 9 is removed too
        new(15, "after-checkpoint", FirstStep: 13), // step 12 was in place (pruning had not run): resume from it
        new(15, "PreviousMovedAside", FirstStep: 15, ResumeFrom: "checkpoint-14"), // step 15 is written again, and the kill comes mid-replace
        new(20, "after-step", FirstStep: 16, Warning: "Resolved"), // the set-aside step 15 is put back and resumed from
    ];

    [Fact]
    public void SIGKILLs_at_every_point_of_a_step_and_of_a_checkpoint_write_and_the_resumed_run_still_ends_bit_exact()
    {
        using var straight = new TemporaryFolder();
        using var killed = new TemporaryFolder();
        Run(straight.Path).ExitCode.Should().Be(0);

        foreach (Cycle cycle in Schedule)
        {
            string[] extra = [cycle.KillStep.ToString(CultureInfo.InvariantCulture), cycle.KillPoint,
                .. cycle.ResumeFrom is null ? [] : new[] { Path.Combine(killed.Path, cycle.ResumeFrom) }];
            (int exitCode, string[] lines) = Run(killed.Path, extra);
            output.WriteLine($"{cycle}: {string.Join(" | ", lines.Where(l => l.StartsWith("warning", StringComparison.Ordinal)))}");

            exitCode.Should().Be(Killed, "{0} must die where it was aimed", cycle);
            StepsPrinted(lines).First().Should().Be(cycle.FirstStep, "{0} resumes from the newest checkpoint the previous kill left intact", cycle);
            StepsPrinted(lines).Last().Should().Be(cycle.KillStep, "every kill point comes after its step is printed and before the next one");
            if (cycle.Warning is null) lines.Should().NotContain(l => l.StartsWith("warning", StringComparison.Ordinal), "{0} found nothing to clean up", cycle);
            else lines.Should().Contain(l => l.StartsWith("warning: " + cycle.Warning, StringComparison.Ordinal), "{0} cleans up what the previous kill left", cycle);
        }
        (int finalExit, string[] finalLines) = Run(killed.Path);

        finalExit.Should().Be(0);
        StepsPrinted(finalLines).First().Should().Be(20, "the last kill came after step 20 was printed but before its checkpoint was written");
        finalLines.Should().Contain("done");
        File.ReadAllBytes(Path.Combine(killed.Path, "final.dat")).Should().Equal(File.ReadAllBytes(Path.Combine(straight.Path, "final.dat")),
            "resume restores weights, optimizer, schedule, data position and RNG exactly, wherever the process died");
        Directory.GetDirectories(killed.Path, ".checkpoint-*").Should().BeEmpty("what the kills left is cleaned up at the next start");
    }

    private static IEnumerable<long> StepsPrinted(string[] lines) =>
        lines.Where(l => l.StartsWith("step ", StringComparison.Ordinal)).Select(l => long.Parse(l.AsSpan(5), CultureInfo.InvariantCulture));

    private static (int ExitCode, string[] Lines) Run(string folder, params string[] extra)
    {
        (int exitCode, string stdout, string stderr) = DotnetProcess.Run(null, Timeout,
            [BuildFacts.CrashHarness, folder, Steps.ToString(CultureInfo.InvariantCulture), .. extra]);
        if (exitCode is not 0 and not Killed) throw new InvalidOperationException($"The harness failed ({exitCode}):\n{stdout}\n{stderr}");
        return (exitCode, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }
}
