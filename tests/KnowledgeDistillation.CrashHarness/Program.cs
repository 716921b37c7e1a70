// A training run for the crash-and-resume test: a small seeded MLP student distilled from a fixed teacher, data
// reshuffled each epoch from torch's RNG, dropout, gradient accumulation, a checkpoint after every step, and
// ResumeFromLatest — the crash-restart loop docs/trainer.md recommends. The test has it kill itself (SIGKILL) at
// chosen points — after a step, at each point of a checkpoint write, after a write — starts it again, and compares the
// final weights with those of a run that was never killed.
// Usage: KnowledgeDistillation.CrashHarness <checkpoint folder> <steps> [<kill step> <kill point> [<resume from>]]
//   kill point: after-step | after-checkpoint | one of CheckpointWritePoint's names (StudentWritten, ManifestWritten,
//   PreviousMovedAside, Renamed); resume from: a checkpoint folder instead of the newest.
// Prints "step N" after each step and the trainer's warnings as "warning: ...", and writes the final student to
// <folder>/final.dat.
using System.Diagnostics;
using System.Globalization;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

string folder = args[0];
long steps = long.Parse(args[1], CultureInfo.InvariantCulture);
var kill = args.Length >= 4 ? new KillAt(long.Parse(args[2], CultureInfo.InvariantCulture), args[3]) : null;
string? resumeFrom = args.Length >= 5 ? args[4] : null;

manual_seed(100);
var teacher = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 5));
manual_seed(7);
var data = new List<DistillationBatch<Tensor>>();
using (no_grad())
{
    for (int i = 0; i < 8; i++)
    {
        Tensor x = randn(16, 10);
        data.Add(new DistillationBatch<Tensor>(x, teacher.call(x).argmax(-1)));
    }
}
manual_seed(200);
var student = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 5));

var trainer = new DistillationTrainer<Tensor>(DistillationModel.FromLogits(teacher), DistillationModel.FromLogits(student),
    DistillationObjective.Create().SoftTargets(0.8, temperature: 2.0).HardTargets(0.2).Build(),
    new DistillationTrainerOptions
    {
        MaxSteps = steps, LearningRate = 1e-2, WarmupSteps = 5, Decay = LearningRateDecay.Cosine, GradientAccumulationSteps = 2,
        Device = "cpu", Seed = 42, CheckpointDirectory = folder, CheckpointInterval = 1, KeepCheckpoints = 2,
        ResumeFrom = resumeFrom, ResumeFromLatest = resumeFrom is null, LoggingInterval = 1_000_000,
    }, new WarningsToConsole());
if (kill is not null) CheckpointStore.CrashPoint = kill.InsideWrite;
trainer.Train(_ => randperm(data.Count).data<long>().ToArray().Select(i => data[(int)i]), callbacks: [new PrintSteps(kill)]);

string final = Path.Combine(folder, "final.dat");
student.save(final + ".tmp");
File.Move(final + ".tmp", final, overwrite: true);
Console.WriteLine("done");

/// <summary>Where this run kills itself: SIGKILL, as a crash or an out-of-memory killer would, with no clean-up.</summary>
internal sealed record KillAt(long Step, string Point)
{
    public void InsideWrite(CheckpointWritePoint point, long step)
    {
        if (step == Step && point.ToString() == Point) Die();
    }

    public static void Die()
    {
        Console.Out.Flush();
        Process.GetCurrentProcess().Kill();
        Thread.Sleep(Timeout.Infinite);
    }
}

/// <summary>Prints the trainer's warnings (e.g. a removed stale write: the previous run was killed inside a checkpoint write).</summary>
internal sealed class WarningsToConsole : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel)) Console.WriteLine($"warning: {formatter(state, exception)}");
    }
}

internal sealed class PrintSteps(KillAt? kill) : IDistillationCallback
{
    public void OnStepEnd(StepReport report, TrainerControl control)
    {
        Console.WriteLine($"step {report.Step}");
        if (kill is { Point: "after-step" } && kill.Step == report.Step) KillAt.Die(); // before this step's checkpoint is written
    }

    public void OnCheckpoint(string path)
    {
        if (kill is { Point: "after-checkpoint" } && CheckpointStore.StepOf(path) == kill.Step) KillAt.Die();
    }
}
