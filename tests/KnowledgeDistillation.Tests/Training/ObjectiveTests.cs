using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Training;

public class ObjectiveTests
{
    [Fact]
    public void Schedules_follow_their_formulas()
    {
        Schedule.Constant(0.3).ValueAt(1000).Should().Be(0.3);
        Schedule.Linear(4, 1, 10).ValueAt(0).Should().Be(4);
        Schedule.Linear(4, 1, 10).ValueAt(5).Should().BeApproximately(2.5, 1e-12);
        Schedule.Linear(4, 1, 10).ValueAt(25).Should().Be(1);
        Schedule.Cosine(0, 1, 10).ValueAt(5).Should().BeApproximately(0.5, 1e-12);
        Schedule.Cosine(0, 1, 10).ValueAt(2).Should().BeApproximately((1 - Math.Cos(Math.PI * 0.2)) / 2, 1e-12);
        ((Action)(() => Schedule.Linear(0, 1, 0))).Should().Throw<ArgumentOutOfRangeException>();
        LearningRateSchedule.At(0, 100, 1.0, 10, LearningRateDecay.Linear).Should().BeApproximately(0.1, 1e-12);
        LearningRateSchedule.At(55, 100, 1.0, 10, LearningRateDecay.Linear).Should().BeApproximately(0.5, 1e-12);
        LearningRateSchedule.At(55, 100, 1.0, 10, LearningRateDecay.Cosine).Should().BeApproximately(0.5, 1e-12);
    }

    [Fact]
    public void The_total_is_the_scheduled_weighted_sum_and_the_temperature_follows_its_schedule()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        Tensor s = randn(6, 7), t = randn(6, 7);
        long[] labels = [0, 1, 2, 3, 4, 5];
        DistillationObjective objective = DistillationObjective.Create()
            .SoftTargets(Schedule.Linear(1.0, 0.0, 10), temperature: Schedule.Linear(5, 1, 4))
            .HardTargets(Schedule.Linear(0.0, 1.0, 10))
            .Build();
        var context = new DistillationContext([new ModelOutput(t)], new ModelOutput(s), tensor(labels), null, Step: 2);

        ObjectiveResult result = objective.Compute(context);

        double soft = new SoftTargetKLLoss(3.0).forward(s, t).item<float>(), hard = new HardTargetCrossEntropyLoss().forward(s, tensor(labels)).item<float>();
        result.Terms.Select(x => x.Name).Should().Equal("soft", "hard");
        result.Terms[0].Value.item<float>().Should().BeApproximately((float)soft, 1e-6f, "T = 5 + (1 − 5)·2/4 = 3 at step 2");
        result.Total.item<float>().Should().BeApproximately((float)(0.8 * soft + 0.2 * hard), 1e-5f);
    }

    [Fact]
    public void DKD_DIST_and_standardised_soft_target_terms_compute_their_losses_with_the_scheduled_temperature()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        Tensor s = randn(6, 5), t = randn(6, 5) * 3;
        Tensor labels = tensor(new long[] { 0, 1, 2, 3, 4, -100 });
        DistillationObjective objective = DistillationObjective.Create()
            .DecoupledKD(1.0, alpha: 0.5, beta: 4.0, temperature: Schedule.Linear(4, 2, 4))
            .Dist(1.0, beta: 2.0, gamma: 0.5, temperature: 3.0)
            .SoftTargets(1.0, temperature: 2.0, standardizeLogits: true)
            .Build();
        ObjectiveResult result = objective.Compute(new DistillationContext([new ModelOutput(t)], new ModelOutput(s), labels, null, Step: 2));

        result.Terms.Select(x => x.Name).Should().Equal("dkd", "dist", "soft");
        result.Terms[0].Value.item<float>().Should().BeApproximately(new DecoupledKDLoss(0.5, 4.0, 3.0).forward(s, t, labels).item<float>(), 1e-6f, "T = 4 + (2 − 4)·2/4 = 3 at step 2");
        result.Terms[1].Value.item<float>().Should().BeApproximately(new DistLoss(2.0, 0.5, 3.0).forward(s, t, null, labels).item<float>(), 1e-6f);
        result.Terms[2].Value.item<float>().Should().BeApproximately(new SoftTargetKLLoss(2.0) { StandardizeLogits = true }.forward(s, t, null, labels).item<float>(), 1e-6f);

        FluentActions.Invoking(() => DistillationObjective.Create().DecoupledKD(1.0).Build().Compute(new DistillationContext([new ModelOutput(t)], new ModelOutput(s), null, null, 0)))
            .Should().Throw<InvalidOperationException>().WithMessage("*\"dkd\"*needs labels*");
        FluentActions.Invoking(() => DistillationObjective.Create().DecoupledKD(1.0, beta: -1)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("beta");
        FluentActions.Invoking(() => DistillationObjective.Create().Dist(1.0, temperature: 0.0)).Should().Throw<ArgumentException>().WithMessage("*dist*temperature*");
    }

    [Fact]
    public void Several_teachers_are_distilled_through_their_weighted_average_distribution()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        Tensor s = randn(4, 5), t1 = randn(4, 5), t2 = randn(4, 5) * 3;
        const double T = 2.0;
        DistillationObjective objective = DistillationObjective.Create().TeacherWeights(3, 1).SoftTargets(1.0, temperature: T).Build();

        double actual = objective.Compute(new DistillationContext([new ModelOutput(t1), new ModelOutput(t2)], new ModelOutput(s), null, null, 0)).Total.item<float>();

        // Reference in doubles: p = 0.75 softmax(t1/T) + 0.25 softmax(t2/T); loss = T² · mean_rows KL(p ‖ softmax(s/T)).
        double[] sv = s.data<float>().Select(v => (double)v).ToArray(), a = t1.data<float>().Select(v => (double)v).ToArray(), b = t2.data<float>().Select(v => (double)v).ToArray();
        double total = 0;
        for (int r = 0; r < 4; r++)
        {
            double[] ps = Softmax(sv, r, T), pa = Softmax(a, r, T), pb = Softmax(b, r, T);
            for (int c = 0; c < 5; c++)
            {
                double p = 0.75 * pa[c] + 0.25 * pb[c];
                total += p * Math.Log(p / ps[c]);
            }
        }
        actual.Should().BeApproximately(T * T * total / 4, 1e-5);
    }

    private static double[] Softmax(double[] z, int row, double temperature)
    {
        double[] e = Enumerable.Range(0, 5).Select(c => Math.Exp(z[row * 5 + c] / temperature)).ToArray();
        return e.Select(v => v / e.Sum()).ToArray();
    }

    [Fact]
    public void Projections_of_hidden_terms_are_parameters_of_the_objective()
    {
        var map = KnowledgeDistillation.Students.LayerSelection.UniformSpread.Map(4, 2, teacherWidth: 12, studentWidth: 6, teacherHeads: 4, studentHeads: 2);

        DistillationObjective objective = DistillationObjective.Create().HiddenStateMse(1.0, map).HiddenStateCosine(1.0, map).Build();

        objective.parameters().Sum(p => p.numel()).Should().Be(2 * 2 * (6 * 12 + 12), "two terms × two pairs × one Linear(6, 12) each");
        objective.StudentRequest.HiddenStates.Should().BeTrue();
        ((Action)(() => DistillationObjective.Create().SoftTargets(1).SoftTargets(1).Build())).Should().Throw<ArgumentException>().WithMessage("Two terms are named \"soft\"*");
    }

    [Fact]
    public void Feature_terms_read_captured_CNN_features_by_position_and_train_their_regressors()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var teacherNet = nn.Sequential(("conv", nn.Conv2d(1, 6, 3, padding: 1)), ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("head", nn.Linear(6, 3)));
        var studentNet = nn.Sequential(("conv", nn.Conv2d(1, 2, 3, padding: 1)), ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("head", nn.Linear(2, 3)));
        using CapturingModel teacher = DistillationModel.WithCapturedHiddenStates(teacherNet, "relu", "flat");
        using CapturingModel student = DistillationModel.WithCapturedHiddenStates(studentNet, "relu", "flat");
        DistillationObjective objective = DistillationObjective.Create()
            .AttentionTransfer(1.0, [(0, 0)])
            .FitNetsHint(1.0, (0, 0), studentChannels: 2, teacherChannels: 6)
            .RelationalKD(1.0, (^1, ^1))
            .ProbabilisticKT(1.0, (1, 1))
            .SimilarityPreserving(1.0, [(0, 0), (^1, ^1)])
            .Build();
        objective.parameters().Sum(p => p.numel()).Should().Be(2 * 6 + 6, "the hint's 1×1 regressor from 2 to 6 channels");

        Tensor x = randn(5, 1, 6, 6);
        using ModelOutput t = teacher.Run(x, new OutputRequest(HiddenStates: true));
        using ModelOutput s = student.Run(x, new OutputRequest(HiddenStates: true));
        ObjectiveResult result = objective.Compute(new DistillationContext([t], s, null, null, 0));
        float Term(string name) => result.Terms.Single(r => r.Name == name).Value.item<float>();
        Term("attention_transfer").Should().BeApproximately(new AttentionTransferLoss().forward(s.HiddenStates![0], t.HiddenStates![0]).item<float>(), 1e-6f);
        Term("rkd").Should().BeApproximately(new RelationalKDLoss().forward(s.HiddenStates[1], t.HiddenStates[1]).item<float>(), 1e-5f);
        Term("pkt").Should().BeApproximately(new ProbabilisticKTLoss().forward(s.HiddenStates[1], t.HiddenStates[1]).item<float>(), 1e-6f);
        float sp = (new SimilarityPreservingLoss().forward(s.HiddenStates[0], t.HiddenStates[0]) + new SimilarityPreservingLoss().forward(s.HiddenStates[1], t.HiddenStates[1])).item<float>() / 2;
        Term("similarity_preserving").Should().BeApproximately(sp, 1e-6f);

        // A per-example mask drops examples; a pair beyond the captured features is an error naming it.
        Tensor keep = tensor(new[] { true, false, true, true, true });
        ObjectiveResult masked = objective.Compute(new DistillationContext([t], s, null, keep, 0));
        masked.Terms.Single(r => r.Name == "pkt").Value.item<float>().Should().BeApproximately(new ProbabilisticKTLoss().forward(s.HiddenStates[1], t.HiddenStates[1], keep).item<float>(), 1e-6f);
        FluentActions.Invoking(() => DistillationObjective.Create().ProbabilisticKT(1.0, (2, 0)).Build().Compute(new DistillationContext([t], s, null, null, 0)))
            .Should().Throw<InvalidOperationException>().WithMessage("*\"pkt\" reads the student feature 2*2 captured*");
        FluentActions.Invoking(() => DistillationObjective.Create().SimilarityPreserving(1.0, [])).Should().Throw<ArgumentException>().WithParameterName("pairs");
    }
}
