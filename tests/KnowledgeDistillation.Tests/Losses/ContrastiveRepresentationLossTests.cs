using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Losses;

/// <summary>CRD against a double-precision reference of Tian et al.'s NCE loss with RepDistiller's memory banks, Z and momentum update.</summary>
[Collection(GlobalRngCollection.Name)]
public class ContrastiveRepresentationLossTests
{
    private static double[] Values(Tensor t) => TestTensors.Values(t);

    /// <summary>L2-normalised x Wᵀ + b for each row.</summary>
    private static double[][] Embed(double[] x, int rows, int width, double[] w, double[] b, int outWidth)
    {
        var result = new double[rows][];
        for (int i = 0; i < rows; i++)
        {
            var e = new double[outWidth];
            for (int o = 0; o < outWidth; o++)
            {
                e[o] = b[o];
                for (int d = 0; d < width; d++) e[o] += w[o * width + d] * x[i * width + d];
            }
            double norm = Math.Sqrt(e.Sum(v => v * v));
            result[i] = e.Select(v => v / norm).ToArray();
        }
        return result;
    }

    private static double Nce(double[][] h, int k, long n)
    {
        double noise = (double)k / n, total = 0;
        foreach (double[] row in h)
        {
            total += Math.Log(row[0] / (row[0] + noise + 1e-7));
            for (int j = 1; j <= k; j++) total += Math.Log(noise / (row[j] + noise + 1e-7));
        }
        return -total / h.Length;
    }

    [Fact]
    public void Loss_normalisers_and_memory_updates_follow_the_definitions()
    {
        manual_seed(40);
        const int rows = 3, ds = 5, dt = 7, width = 4, k = 3;
        const long n = 10;
        var loss = new ContrastiveRepresentationLoss(ds, dt, n, negatives: k, temperature: 0.5, momentum: 0.25, embeddingWidth: width);
        loss.named_buffers().Select(b => b.name).Should().BeEquivalentTo(["student_memory", "teacher_memory", "normalizers"]);
        double[] xs = TestTensors.Normal(41, rows * ds), xt = TestTensors.Normal(42, rows * dt);
        long[] positives = [2, 7, 0];
        long[] negatives = [1, 5, 9, 3, 3, 8, 4, 6, 1];
        double[] ms = Values(loss.StudentMemory), mt = Values(loss.TeacherMemory);
        var state = loss.state_dict();
        double[][] vs = Embed(xs, rows, ds, Values(state["student_embedding.weight"]), Values(state["student_embedding.bias"]), width);
        double[][] vt = Embed(xt, rows, dt, Values(state["teacher_embedding.weight"]), Values(state["teacher_embedding.bias"]), width);

        double[][] Scores(double[] memory, double[][] anchors) => Enumerable.Range(0, rows).Select(i =>
            new[] { positives[i] }.Concat(negatives.Skip(i * k).Take(k)).Select(j =>
                Math.Exp(Enumerable.Range(0, width).Sum(d => memory[j * width + d] * anchors[i][d]) / 0.5)).ToArray()).ToArray();
        double[][] teacherAnchored = Scores(ms, vt), studentAnchored = Scores(mt, vs);
        double zt = teacherAnchored.SelectMany(r => r).Average() * n, zs = studentAnchored.SelectMany(r => r).Average() * n;
        double expected = Nce(teacherAnchored.Select(r => r.Select(v => v / zt).ToArray()).ToArray(), k, n)
            + Nce(studentAnchored.Select(r => r.Select(v => v / zs).ToArray()).ToArray(), k, n);

        Tensor value = loss.forward(TestTensors.Float32(xs, rows, ds), TestTensors.Float32(xt, rows, dt), tensor(positives), tensor(negatives, [rows, k]));
        TestTensors.Scalar(value).ShouldMatch(expected, 1e-4);
        Values(loss.Normalizers)[0].ShouldMatch(zt, 1e-4);
        Values(loss.Normalizers)[1].ShouldMatch(zs, 1e-4);

        // Banks: row p ← normalise(m · row + (1 − m) · v); every other row unchanged.
        double[] newMs = Values(loss.StudentMemory), newMt = Values(loss.TeacherMemory);
        for (int i = 0; i < rows; i++)
        {
            long p = positives[i];
            double[] moved = Enumerable.Range(0, width).Select(d => 0.25 * ms[p * width + d] + 0.75 * vs[i][d]).ToArray();
            double norm = Math.Sqrt(moved.Sum(v => v * v));
            for (int d = 0; d < width; d++) newMs[p * width + d].ShouldMatch(moved[d] / norm, 1e-5);
            double[] movedT = Enumerable.Range(0, width).Select(d => 0.25 * mt[p * width + d] + 0.75 * vt[i][d]).ToArray();
            double normT = Math.Sqrt(movedT.Sum(v => v * v));
            for (int d = 0; d < width; d++) newMt[p * width + d].ShouldMatch(movedT[d] / normT, 1e-5);
        }
        for (long r = 0; r < n; r++)
        {
            if (positives.Contains(r)) continue;
            for (int d = 0; d < width; d++) newMs[r * width + d].Should().Be(ms[r * width + d]);
        }

        // Z stays as the first batch set it.
        loss.forward(TestTensors.Float32(xt.Take(rows * ds).ToArray(), rows, ds), TestTensors.Float32(xs.Concat(xs).Take(rows * dt).ToArray(), rows, dt), tensor(positives), null);
        Values(loss.Normalizers)[0].ShouldMatch(zt, 1e-4);
    }

    [Fact]
    public void Drawn_negatives_cover_the_dataset_uniformly_and_never_the_example_itself()
    {
        manual_seed(43);
        const long n = 6;
        var loss = new ContrastiveRepresentationLoss(2, 2, n, negatives: 4, embeddingWidth: 2);
        var counts = new long[n];
        Tensor positives = tensor(Enumerable.Range(0, 3000).Select(i => (long)(i % n)).ToArray());
        Tensor negatives = loss.DrawNegatives(positives);
        negatives.shape.Should().Equal(3000, 4);
        negatives.eq(positives.unsqueeze(1)).any().item<bool>().Should().BeFalse();
        foreach (long v in negatives.data<long>()) counts[v]++;
        counts.Should().OnlyContain(c => Math.Abs(c - 3000 * 4 / n) < 3000 * 4 / n * 0.1);
        loss.forward(zeros(3, 2), zeros(3, 2), tensor(new long[] { 0, 1, 5 }), null).isfinite().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void Gradients_reach_the_student_features_and_both_embeddings_but_not_the_teacher_features()
    {
        manual_seed(44);
        var loss = new ContrastiveRepresentationLoss(3, 4, 20, negatives: 5, embeddingWidth: 4);
        loss.to(ScalarType.Float64);
        double[] x = TestTensors.Normal(45, 2 * 3);
        Tensor teacher = TestTensors.Float64(TestTensors.Normal(46, 2 * 4), 2, 4).requires_grad_();
        Tensor positives = tensor(new long[] { 3, 11 }), negatives = tensor(new long[] { 0, 1, 2, 4, 5, 6, 7, 8, 9, 10 }, [2, 5]);
        // Z set by a first call, then the banks frozen by momentum... the bank update changes the loss between calls, so
        // compare autograd with finite differences on a copy whose banks are restored before each evaluation.
        loss.forward(TestTensors.Float64(x, 2, 3), teacher, positives, negatives);
        Dictionary<string, Tensor> saved = loss.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        double[] analytic = [];
        double Evaluate(double[] input, bool backward = false)
        {
            using (no_grad()) foreach (var (key, value) in loss.state_dict()) value.copy_(saved[key]);
            Tensor s = TestTensors.Float64(input, 2, 3).requires_grad_(backward);
            Tensor l = loss.forward(s, teacher, positives, negatives);
            if (backward)
            {
                l.backward();
                analytic = Values(s.grad!);
            }
            return TestTensors.Scalar(l);
        }
        Evaluate(x, backward: true);
        teacher.grad.Should().BeNull("the teacher's features are detached");
        loss.parameters().Select(p => p.grad is { }).Should().AllBeEquivalentTo(true, "both embeddings learn");
        for (int i = 0; i < x.Length; i++)
        {
            double[] plus = (double[])x.Clone(), minus = (double[])x.Clone();
            plus[i] += 1e-6;
            minus[i] -= 1e-6;
            double numeric = (Evaluate(plus) - Evaluate(minus)) / 2e-6;
            analytic[i].Should().BeApproximately(numeric, 1e-5 * Math.Max(1, Math.Abs(numeric)));
        }
    }

    /// <summary>A student and a teacher MLP with their ReLU features captured, and 4 batches of 8 examples numbered 0 … 31.</summary>
    private static (CapturingModel Student, CapturingModel Teacher, Tensor Inputs, List<DistillationBatch<Tensor>> Batches) TrainerSetup(int seed)
    {
        manual_seed(seed);
        var studentNet = nn.Sequential(("body", nn.Linear(6, 5)), ("relu", nn.ReLU()), ("head", nn.Linear(5, 3)));
        var teacherNet = nn.Sequential(("body", nn.Linear(6, 8)), ("relu", nn.ReLU()), ("head", nn.Linear(8, 3)));
        Tensor x = randn(32, 6);
        var batches = Enumerable.Range(0, 4).Select(b => new DistillationBatch<Tensor>(x.narrow(0, b * 8, 8)) { ExampleIndices = arange(b * 8, b * 8 + 8) }).ToList();
        return (DistillationModel.WithCapturedHiddenStates(studentNet, "relu"), DistillationModel.WithCapturedHiddenStates(teacherNet, "relu"), x, batches);
    }

    private static DistillationObjectiveBuilder CrdObjective() => DistillationObjective.Create()
        .ContrastiveRepresentation(1.0, (0, 0), studentWidth: 5, teacherWidth: 8, datasetSize: 32, negatives: 8, embeddingWidth: 6);

    [Fact]
    public void Trainer_batches_hand_their_example_indices_to_the_CRD_term()
    {
        (CapturingModel student, CapturingModel teacher, Tensor x, List<DistillationBatch<Tensor>> batches) = TrainerSetup(47);
        using var disposeStudent = student;
        using var disposeTeacher = teacher;
        DistillationObjective objective = CrdObjective().Build();
        var trainer = new DistillationTrainer<Tensor>([teacher], student, objective, new DistillationTrainerOptions { Epochs = 2, Device = "cpu", LoggingInterval = 100 });
        var crd = objective.modules().OfType<ContrastiveRepresentationLoss>().Single();
        Tensor before = crd.StudentMemory.clone();
        trainer.Train(batches);
        crd.Normalizers.ge(0).all().item<bool>().Should().BeTrue("the first batch set Z");
        crd.StudentMemory.ne(before).any(1).all().item<bool>().Should().BeTrue("every example's bank row was updated");

        FluentActions.Invoking(() => new DistillationTrainer<Tensor>([teacher], student, objective, new DistillationTrainerOptions { Epochs = 1, Device = "cpu" })
                .Train([new DistillationBatch<Tensor>(x.narrow(0, 0, 8))]))
            .Should().Throw<Exception>().Where(e => e.ToString().Contains("ExampleIndices"));
    }

    [Fact]
    public void An_example_twice_in_a_batch_moves_its_bank_row_once_by_its_last_occurrence()
    {
        manual_seed(48);
        var twice = new ContrastiveRepresentationLoss(3, 4, 10, negatives: 4, embeddingWidth: 5);
        var once = new ContrastiveRepresentationLoss(3, 4, 10, negatives: 4, embeddingWidth: 5);
        once.load_state_dict(twice.state_dict());
        Tensor s = randn(3, 3), t = randn(3, 4), negatives = tensor(new long[,] { { 1, 2, 4, 5 }, { 0, 2, 4, 6 }, { 1, 2, 4, 5 } });

        twice.forward(s, t, tensor(new long[] { 3, 7, 3 }), negatives);
        once.forward(s.narrow(0, 1, 2), t.narrow(0, 1, 2), tensor(new long[] { 7, 3 }), negatives.narrow(0, 1, 2));

        Same(twice.StudentMemory, once.StudentMemory).Should().BeTrue("example 3's row moves by its last occurrence only, whatever the order of writes");
        Same(twice.TeacherMemory, once.TeacherMemory).Should().BeTrue();
    }

    [Fact]
    public void NaN_features_leave_their_bank_rows_as_they_were_so_later_clean_batches_stay_finite()
    {
        manual_seed(49);
        var loss = new ContrastiveRepresentationLoss(3, 4, 10, negatives: 9, embeddingWidth: 5);
        Tensor s = randn(4, 3), t = randn(4, 4);
        loss.forward(s, t, tensor(new long[] { 0, 1, 2, 3 }), null); // sets Z
        Tensor before = loss.StudentMemory.clone(), teacherBefore = loss.TeacherMemory.clone();
        Tensor poisoned = s.clone();
        poisoned[1] = tensor(float.NaN);

        loss.forward(poisoned, t, tensor(new long[] { 4, 5, 6, 7 }), null);

        Same(loss.StudentMemory[5], before[5]).Should().BeTrue("the NaN row's example keeps its bank row");
        Same(loss.TeacherMemory[5], teacherBefore[5]).Should().BeTrue();
        Same(loss.StudentMemory[4], before[4]).Should().BeFalse("the finite rows of the same batch still move theirs");
        loss.StudentMemory.isfinite().all().item<bool>().Should().BeTrue();
        loss.forward(randn(4, 3), randn(4, 4), tensor(new long[] { 5, 6, 8, 9 }), null).isfinite().item<bool>().Should().BeTrue("a clean batch after the bad one is finite");
    }

    [Fact]
    public void An_empty_batch_gives_zero_even_first_and_changes_no_bank_or_normaliser()
    {
        var loss = new ContrastiveRepresentationLoss(3, 4, 10, negatives: 4, embeddingWidth: 5);
        Tensor before = loss.StudentMemory.clone();

        Tensor value = loss.forward(zeros(0, 3), zeros(0, 4), zeros(0, dtype: ScalarType.Int64), null);

        value.item<float>().Should().Be(0);
        loss.Normalizers.ge(0).any().item<bool>().Should().BeFalse("Z is set by the first non-empty batch");
        Same(loss.StudentMemory, before).Should().BeTrue();
    }

    [Fact]
    public void A_step_the_trainer_skips_for_a_non_finite_loss_leaves_the_banks_where_they_were()
    {
        (CapturingModel student, CapturingModel teacher, _, List<DistillationBatch<Tensor>> batches) = TrainerSetup(50);
        using var disposeStudent = student;
        using var disposeTeacher = teacher;
        DistillationObjective objective = CrdObjective()
            .Term("fails_at_step_2", 1.0, c => c.Step == 2 ? c.Student.Logits.sum() * double.NaN : zeros([]), usesTeachers: false)
            .Build();
        var crd = objective.modules().OfType<ContrastiveRepresentationLoss>().Single();
        var banks = new Dictionary<long, Tensor>();
        var trainer = new DistillationTrainer<Tensor>([teacher], student, objective,
            new DistillationTrainerOptions { MaxSteps = 4, Device = "cpu", NonFiniteLoss = NonFiniteLossPolicy.SkipStep, LoggingInterval = 100 });

        TrainingResult result = trainer.Train(batches, callbacks: [new BankAt(crd, banks)]);

        result.SkippedSteps.Should().Be(1);
        Same(banks[3], banks[2]).Should().BeTrue("step 3 (0-based 2) was skipped: its batch must not have moved the banks");
        Same(banks[2], banks[1]).Should().BeFalse("a step that is taken moves them");
        Same(banks[4], banks[3]).Should().BeFalse();
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private sealed class BankAt(ContrastiveRepresentationLoss crd, Dictionary<long, Tensor> banks) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => banks[report.Step] = crd.StudentMemory.clone().DetachFromDisposeScope();
    }

    [Fact]
    public void Bad_input_names_the_argument_and_the_values()
    {
        FluentActions.Invoking(() => new ContrastiveRepresentationLoss(2, 3, 10, negatives: 4, embeddingWidth: 4).forward(zeros(2, 5), zeros(2, 3), tensor(new long[] { 0, 1 }), null))
            .Should().Throw<ArgumentException>().WithParameterName("studentFeatures").WithMessage("*student 2, teacher 3*[2, 5] (5)*");
        var loss = new ContrastiveRepresentationLoss(2, 3, 10, negatives: 4, embeddingWidth: 4);
        FluentActions.Invoking(() => loss.forward(zeros(2, 2), zeros(2, 3), tensor(new long[] { 0, 10 }), null)).Should().Throw<ArgumentException>().WithParameterName("exampleIndices").WithMessage("*[0, 10)*10*");
        FluentActions.Invoking(() => loss.forward(zeros(2, 2), zeros(3, 3), tensor(new long[] { 0, 1 }), null)).Should().Throw<ArgumentException>().WithParameterName("teacherFeatures");
        FluentActions.Invoking(() => loss.forward(zeros(2, 2), zeros(2, 3), tensor(new long[] { 0, 1 }), zeros(2, 3, dtype: ScalarType.Int64))).Should().Throw<ArgumentException>().WithParameterName("negativeIndices").WithMessage("*[2, 4]*[2, 3]*");
        FluentActions.Invoking(() => new ContrastiveRepresentationLoss(2, 3, 10, negatives: 10)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("negatives");
        FluentActions.Invoking(() => new ContrastiveRepresentationLoss(2, 3, 10, negatives: 4, momentum: 1)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("momentum");
        FluentActions.Invoking(() => DistillationObjective.Create().ContrastiveRepresentation(1.0, (0, 0), 2, 3, datasetSize: 5, negatives: 5)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("negatives");
    }
}
