// A training run for the crash-and-resume test: a small seeded MLP student distilled from a fixed teacher, data
// reshuffled each epoch from torch's RNG, dropout, gradient accumulation, a checkpoint after every step, and
// ResumeFrom = "latest" — the crash-restart loop docs/trainer.md recommends. The test SIGKILLs it at random moments
// and starts it again until it finishes; the final weights must equal those of a run that was never killed.
// Usage: KnowledgeDistillation.CrashHarness <checkpoint folder> <steps>. Prints "step N" after each step and the
// trainer's warnings as "warning: ...", and writes the final student to <folder>/final.dat.
using System.Globalization;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

string folder = args[0];
long steps = long.Parse(args[1], CultureInfo.InvariantCulture);

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
        ResumeFrom = Checkpoints.Latest, LoggingInterval = 1_000_000,
    }, new WarningsToConsole());
trainer.Train(_ => randperm(data.Count).data<long>().ToArray().Select(i => data[(int)i]), callbacks: [new PrintSteps()]);

string final = Path.Combine(folder, "final.dat");
student.save(final + ".tmp");
File.Move(final + ".tmp", final, overwrite: true);
Console.WriteLine("done");

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

internal sealed class PrintSteps : IDistillationCallback
{
    public void OnStepEnd(StepReport report, TrainerControl control) => Console.WriteLine($"step {report.Step}");
}
