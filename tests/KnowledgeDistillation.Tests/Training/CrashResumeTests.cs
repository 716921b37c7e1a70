using System.Diagnostics;
using Xunit.Abstractions;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>
/// The crash-restart loop for real: a training process (tests/KnowledgeDistillation.CrashHarness) is killed with
/// SIGKILL at random moments — between steps, inside a step, inside a checkpoint write — and started again with
/// ResumeFrom = "latest" until it finishes. Its final weights must equal, byte for byte, those of a run never killed.
/// </summary>
public class CrashResumeTests(ITestOutputHelper output)
{
    // Twelve kills, and more (up to MaxKills) until one has landed inside a checkpoint write: on an idle machine about
    // 8 of 12 do, but when the test suite loads both cores the harness's output is read late and a whole run of
    // twelve can miss every write, which would leave the stale-write path untested.
    private const int Steps = 400, Kills = 12, MaxKills = 40;
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    [Fact]
    public void Twelve_SIGKILLs_at_random_moments_and_the_resumed_run_still_ends_bit_exact()
    {
        using var straight = new TemporaryFolder();
        using var killed = new TemporaryFolder();
        using (TrainingProcess uninterrupted = Harness(straight.Path)) uninterrupted.WaitForCompletion().Should().Contain("done");

        var random = new Random(12);
        int kills = 0, lastStep = 0, redone = 0, staleWrites = 0;
        for (int cycle = 0; cycle < Kills || (staleWrites == 0 && cycle < MaxKills); cycle++)
        {
            using TrainingProcess run = Harness(killed.Path);
            // Kill after a random number of completed steps, then a random extra delay: the kill lands anywhere in a step or a write.
            int stepsToWait = 1 + random.Next(25);
            (int First, int Last)? reached = run.WaitForSteps(stepsToWait);
            Thread.Sleep(random.Next(0, 6)); // a step and its checkpoint write take a few milliseconds here
            if (run.Kill()) kills++;
            reached.Should().NotBeNull("cycle {0}: the run must make progress before it is killed", cycle);
            // "step N" is printed before step N's checkpoint is written: a kill inside that write resumes from N - 1 and
            // prints N again. So a restart never goes back further than the last step it printed.
            // (The previous run may have gone on a little after the last line read, so the first step can be later still.)
            reached!.Value.First.Should().BeGreaterThanOrEqualTo(lastStep, "cycle {0} resumes where the previous one stopped", cycle);
            if (reached.Value.First == lastStep) redone++;
            if (run.RemovedStaleWrite) staleWrites++;
            lastStep = reached.Value.Last;
        }
        using (TrainingProcess last = Harness(killed.Path))
        {
            string printed = last.WaitForCompletion();
            printed.Should().Contain("done");
            if (printed.Contains("warning: Removed", StringComparison.Ordinal)) staleWrites++;
        }

        kills.Should().BeGreaterThanOrEqualTo(10);
        staleWrites.Should().BeGreaterThanOrEqualTo(1, "a write takes about half of each step here, so kills land inside writes (8 of 12 on an idle machine)");
        output.WriteLine($"{kills} kills; {staleWrites} landed inside a checkpoint write (its temporary folder was removed at the next start); " +
            $"{redone} restarts redid the step last printed");
        File.ReadAllBytes(Path.Combine(killed.Path, "final.dat")).Should().Equal(File.ReadAllBytes(Path.Combine(straight.Path, "final.dat")),
            "resume restores weights, optimizer, schedule, data position and RNG exactly, however the process died");
        Directory.GetDirectories(killed.Path, ".checkpoint-*").Should().BeEmpty("the stale writes of killed runs are removed at the next start");
    }

    private static TrainingProcess Harness(string folder) => new(folder);

    private sealed class TrainingProcess(string folder) : IDisposable
    {
        private readonly Process _process = Start(folder);

        private static Process Start(string folder) =>
            Process.Start(DotnetProcess.StartInfo(null, BuildFacts.CrashHarness, folder, Steps.ToString(System.Globalization.CultureInfo.InvariantCulture)))!;

        /// <summary>Reads progress until <paramref name="count"/> steps have completed; the first and the last step seen, or null if the process ended first.</summary>
        public (int First, int Last)? WaitForSteps(int count)
        {
            int seen = 0, first = 0, last = 0;
            while (seen < count && _process.StandardOutput.ReadLine() is { } line)
            {
                if (line.StartsWith("warning: Removed", StringComparison.Ordinal)) RemovedStaleWrite = true;
                if (!line.StartsWith("step ", StringComparison.Ordinal)) continue;
                last = int.Parse(line.AsSpan(5), System.Globalization.CultureInfo.InvariantCulture);
                if (seen++ == 0) first = last;
            }
            return seen == count ? (first, last) : null;
        }

        /// <summary>Whether this run started by removing the temporary folder of a checkpoint write that a kill interrupted.</summary>
        public bool RemovedStaleWrite { get; private set; }

        /// <summary>SIGKILL; true when the process was still running.</summary>
        public bool Kill()
        {
            if (_process.HasExited) return false;
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
            return true;
        }

        public string WaitForCompletion()
        {
            Task<string> stdout = _process.StandardOutput.ReadToEndAsync(), stderr = _process.StandardError.ReadToEndAsync();
            if (!_process.WaitForExit(Timeout))
            {
                _process.Kill(entireProcessTree: true);
                throw new TimeoutException($"The harness did not finish within {Timeout}.");
            }
            _process.ExitCode.Should().Be(0, "the harness printed:\n{0}\n{1}", stdout.Result, stderr.Result);
            return stdout.Result;
        }

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }
}
