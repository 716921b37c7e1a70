using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Tests.Losses;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>
/// An objective holds no per-step state: the scheduled temperature and mixture weights travel with each call, so one
/// objective can serve two trainers or threads at once, and masked-LM batches can be distilled on every real token.
/// </summary>
public sealed class ObjectiveReuseTests
{
    private const int Rows = 6, Classes = 5;
    private static readonly double[] StudentValues = TestTensors.Normal(31, Rows * Classes, 2), TeacherValues = TestTensors.Normal(32, Rows * Classes, 3);

    private static DistillationObjective Scheduled() => DistillationObjective.Create()
        .SoftTargets(1.0, temperature: Schedule.Linear(1, 4, 10))
        .GeneralizedJensenShannon(1.0, beta: Schedule.Linear(0.1, 0.9, 10), temperature: Schedule.Linear(2, 1, 10))
        .SkewKL(1.0, alpha: Schedule.Linear(0, 0.5, 10))
        .Build();

    private static double[] TermValues(DistillationObjective objective, long step)
    {
        using var scope = NewDisposeScope();
        Tensor s = TestTensors.Float64(StudentValues, Rows, Classes), t = TestTensors.Float64(TeacherValues, Rows, Classes);
        ObjectiveResult result = objective.Compute(new DistillationContext([new ModelOutput(t)], new ModelOutput(s), null, null, step));
        return [.. result.Terms.Select(term => TestTensors.Scalar(term.Value))];
    }

    [Fact]
    public void A_term_leaves_its_loss_module_as_it_was_made()
    {
        DistillationObjective objective = Scheduled();
        double[] before = [.. objective.Terms.Select(t => ((LogitDistillationLoss)t.Module!).Temperature)];

        _ = TermValues(objective, step: 10);

        objective.Terms.Select(t => ((LogitDistillationLoss)t.Module!).Temperature).Should().Equal(before, "the step's temperature is passed to the loss, not stored in it");
        ((GeneralizedJensenShannonLoss)objective.Terms[1].Module!).Beta.Should().Be(0.5);
        ((SkewKLLoss)objective.Terms[2].Module!).Alpha.Should().Be(0.1);
    }

    [Fact]
    public void One_objective_computed_from_two_threads_at_different_steps_gives_each_step_its_own_values()
    {
        // References in double precision from the terms' definitions: step 0 is T = 1 / (T = 2, β = 0.1) / α = 0; step 10 is T = 4 / (T = 1, β = 0.9) / α = 0.5.
        double[] atZero = [Reference.SoftTargetKl(StudentValues, TeacherValues, Classes, 1.0), Reference.GeneralizedJsd(StudentValues, TeacherValues, Classes, 0.1, 2.0), Reference.SoftTargetKl(StudentValues, TeacherValues, Classes, 1.0)];
        double[] atTen = [Reference.SoftTargetKl(StudentValues, TeacherValues, Classes, 4.0), Reference.GeneralizedJsd(StudentValues, TeacherValues, Classes, 0.9, 1.0), SkewKl(0.5)];
        DistillationObjective shared = Scheduled();

        Parallel.For(0, 2, worker =>
        {
            for (int i = 0; i < 60; i++)
            {
                long step = (worker + i) % 2 == 0 ? 0 : 10;
                double[] values = TermValues(shared, step);
                double[] expected = step == 0 ? atZero : atTen;
                for (int k = 0; k < values.Length; k++) values[k].Should().BeApproximately(expected[k], 1e-10 * Math.Max(1, Math.Abs(expected[k])), "term {0} at step {1}", k, step);
            }
        });
    }

    /// <summary>KL(p_t ‖ α p_t + (1 − α) p_s) per row at T = 1, averaged, in double precision.</summary>
    private static double SkewKl(double alpha)
    {
        double total = 0;
        for (int r = 0; r < Rows; r++)
        {
            double[] p = Softmax(TeacherValues, r), q = Softmax(StudentValues, r);
            total += Enumerable.Range(0, Classes).Sum(c => p[c] * Math.Log(p[c] / (alpha * p[c] + (1 - alpha) * q[c])));
        }
        return total / Rows;
    }

    private static double[] Softmax(double[] logits, int row)
    {
        double[] z = logits.Skip(row * Classes).Take(Classes).ToArray();
        double max = z.Max(), sum = z.Sum(v => Math.Exp(v - max));
        return [.. z.Select(v => Math.Exp(v - max) / sum)];
    }

    [Fact]
    public void Soft_targets_on_every_token_distil_the_unmasked_tokens_of_a_masked_LM_batch_too()
    {
        using var scope = NewDisposeScope();
        const int batch = 2, sequence = 3;
        // Only one token per sequence carries a masked-LM label; the last token of the second sequence is padding.
        long[] labels = [-100, 2, -100, 4, -100, -100];
        bool[] attention = [true, true, true, true, true, false];
        Tensor s = TestTensors.Float64(StudentValues, batch, sequence, Classes), t = TestTensors.Float64(TeacherValues, batch, sequence, Classes);
        var student = new ModelOutput(s, attentionMask: tensor(attention, [batch, sequence]));
        var context = new DistillationContext([new ModelOutput(t)], student, tensor(labels, [batch, sequence]), null, 0);

        double labelled = TestTensors.Scalar(DistillationObjective.Create().SoftTargets(1.0).Build().Compute(context).Terms[0].Value);
        double everyToken = TestTensors.Scalar(DistillationObjective.Create().SoftTargets(1.0, rows: LogitRows.EveryToken).Build().Compute(context).Terms[0].Value);

        labelled.Should().BeApproximately(Reference.SoftTargetKl(StudentValues, TeacherValues, Classes, 2.0, keep: [false, true, false, true, false, false]), 1e-10);
        everyToken.Should().BeApproximately(Reference.SoftTargetKl(StudentValues, TeacherValues, Classes, 2.0, keep: attention), 1e-10, "DistilBERT distils every real token, masked or not");
    }
}
