using System.Diagnostics;
using System.Text.Json;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Samples.Shared;
using Spectre.Console;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TinyGpt;

/// <summary>How the teacher was trained: what the README reports, cached with its weights.</summary>
internal sealed record TeacherRecord(int StableSteps, int DecaySteps, double PlateauPerplexity, double FinalPerplexity, double Seconds, List<double[]> Curve)
{
    /// <summary>What ended the constant-rate phase, in words (null in records cached before it was kept).</summary>
    public string? EndedBy { get; init; }

    /// <summary>The validation perplexity's relative improvement over the last fifth of the constant phase, when measurable.</summary>
    public double? LastFifthImprovement { get; init; }

    /// <summary>One sentence on how the teacher was trained, saying which rule ended the constant phase.</summary>
    public string Summary()
    {
        string improvement = LastFifthImprovement is double gain ? $" (it improved {gain:P1} over the last fifth)" : "";
        return $"Teacher: {StableSteps:N0} steps at a constant rate, ended by {EndedBy ?? "a rule this cached record does not name"}{improvement}, " +
            $"then {DecaySteps:N0} of decay; {Seconds / 60:0.0} min";
    }
}

/// <summary>
/// Trains the teacher until it stops improving, with a plain TorchSharp language-model loop (the teacher is trained
/// before any distillation). The learning rate warms up, then stays constant while the validation perplexity is
/// measured every <see cref="EvaluationInterval"/> steps; once it has improved by less than 1% over the last fifth
/// of the steps so far, a final fifth of that many steps decays the rate linearly to 0 (a warm-up/stable/decay
/// schedule: the length need not be known in advance). The weights and a record of the run are cached in the output
/// folder, so the cost is paid once per machine.
/// </summary>
internal sealed class TeacherTraining(Settings settings, GptConfig config)
{
    private const int EvaluationInterval = 250, WarmupSteps = 100;
    private const double PeakLearningRate = 2e-3, Plateau = 0.01;

    public (GptModel Teacher, TeacherRecord Record, bool Cached) TrainOrLoad(TextBatches batches, List<DistillationBatch<TokenBatch>> validation)
    {
        Directory.CreateDirectory(settings.Output);
        string name = settings.Quick ? $"teacher-quick-{settings.QuickTeacherSteps}steps" : "teacher-converged";
        string weights = Path.Combine(settings.Output, $"{name}-{config.Layers}x{config.Width}-seed1.dat"), record = Path.ChangeExtension(weights, ".json");
        manual_seed(1);
        var teacher = new GptModel(config);
        if (File.Exists(weights) && File.Exists(record))
        {
            teacher.load(weights);
            teacher.to(settings.Device);
            teacher.eval();
            AnsiConsole.MarkupLine($"[grey]Teacher loaded from {Markup.Escape(weights)}[/]");
            return (teacher, JsonSerializer.Deserialize<TeacherRecord>(File.ReadAllText(record))!, true);
        }

        teacher.to(settings.Device);
        var clock = Stopwatch.StartNew();
        var optimizer = optim.AdamW(teacher.parameters(), PeakLearningRate, weight_decay: 0.01);
        var curve = new List<double[]>();
        using IEnumerator<DistillationBatch<TokenBatch>> data = batches.Training().GetEnumerator();
        int step = 0, stable = 0, decay = 0;
        double plateauPerplexity = double.NaN;
        string endedBy = "";
        AnsiConsole.Status().Start("teacher: warm-up and constant learning rate until the validation perplexity stops improving", status =>
        {
            int maxStable = settings.Quick ? settings.QuickTeacherSteps : settings.TeacherMaxSteps;
            string cap = settings.Quick ? $"the quick mode's fixed {maxStable:N0} steps" : $"the step cap (--teacher-max-steps {maxStable:N0}) before any plateau";
            while (stable == 0)
            {
                Step(teacher, optimizer, data, step < WarmupSteps ? PeakLearningRate * (step + 1) / WarmupSteps : PeakLearningRate);
                step++;
                if (step % EvaluationInterval != 0 && step != maxStable) continue;
                double perplexity = Perplexity(teacher, validation);
                curve.Add([step, perplexity]);
                status.Status($"teacher: step {step}, validation perplexity {perplexity:0.000} ({clock.Elapsed.TotalMinutes:0.0} min)");
                // The plateau is checked first: when both hold at the same evaluation, it is the plateau that ended the phase.
                bool plateau = !settings.Quick && Plateaued(curve);
                if (plateau || step >= maxStable)
                {
                    stable = step;
                    plateauPerplexity = perplexity;
                    endedBy = plateau ? "the plateau rule (less than 1% better than a fifth of the steps before)" : cap;
                }
            }
        });
        decay = settings.Quick ? 0 : stable / 5;
        TrainingProgressBar.Show("teacher: final decay of the learning rate", decay, progress =>
        {
            for (int i = 0; i < decay; i++)
            {
                Step(teacher, optimizer, data, PeakLearningRate * (decay - i) / decay);
                progress.Report(new TrainingProgress(i + 1, decay, double.NaN));
            }
        });
        double final = Perplexity(teacher, validation);
        curve.Add([stable + decay, final]);
        teacher.eval();
        var result = new TeacherRecord(stable, decay, plateauPerplexity, final, clock.Elapsed.TotalSeconds, curve)
        {
            EndedBy = endedBy,
            LastFifthImprovement = LastFifthImprovement(curve.Take(curve.Count - 1).ToList()),
        };
        teacher.save(weights);
        File.WriteAllText(record, JsonSerializer.Serialize(result));
        return (teacher, result, false);
    }

    /// <summary>Less than 1% better than a fifth of the steps ago (measured at the evaluation points).</summary>
    private static bool Plateaued(List<double[]> curve) =>
        curve[^1][0] >= 2000 && LastFifthImprovement(curve) is double gain && gain < Plateau;

    /// <summary>(perplexity a fifth of the steps ago − perplexity now) / the former, at the evaluation points; null before there are two.</summary>
    private static double? LastFifthImprovement(List<double[]> curve)
    {
        if (curve.Count == 0) return null;
        double now = curve[^1][1], step = curve[^1][0];
        double[]? earlier = curve.LastOrDefault(p => p[0] <= step * 0.8);
        return earlier is null ? null : (earlier[1] - now) / earlier[1];
    }

    private void Step(GptModel teacher, OptimizerHelper optimizer, IEnumerator<DistillationBatch<TokenBatch>> data, double learningRate)
    {
        using var scope = NewDisposeScope();
        teacher.train();
        data.MoveNext();
        DistillationBatch<TokenBatch> batch = data.Current;
        foreach (var group in optimizer.ParamGroups) group.LearningRate = learningRate;
        optimizer.zero_grad();
        Tensor logits = teacher.call(batch.Inputs.InputIds.to(settings.Device));
        nn.functional.cross_entropy(logits.reshape(-1, config.VocabSize), batch.Labels!.to(settings.Device).reshape(-1)).backward();
        nn.utils.clip_grad_norm_(teacher.parameters(), 1.0);
        optimizer.step();
    }

    /// <summary>exp of the mean next-byte cross-entropy over the batches.</summary>
    public static double Perplexity(IModuleModel<TokenBatch> model, List<DistillationBatch<TokenBatch>> batches)
    {
        nn.Module module = model.Module;
        bool training = module.training;
        module.eval();
        using var noGrad = no_grad();
        double total = 0;
        long tokens = 0;
        Device device = SampleDevice.Of(module);
        foreach (DistillationBatch<TokenBatch> batch in batches)
        {
            using var scope = NewDisposeScope();
            Tensor logits = model.Run(new TokenBatch(batch.Inputs.InputIds.to(device)), OutputRequest.LogitsOnly).Logits;
            total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), batch.Labels!.to(device).reshape(-1), reduction: nn.Reduction.Sum).item<float>();
            tokens += batch.Labels!.numel();
        }
        module.train(training);
        return Math.Exp(total / tokens);
    }
}
