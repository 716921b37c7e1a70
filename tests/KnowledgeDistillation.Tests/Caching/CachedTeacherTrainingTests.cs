using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Caching;

/// <summary>The trainer with a <see cref="CachedTeacher{TInput}"/> in place of a running teacher.</summary>
[Collection(GlobalRngCollection.Name)]
public class CachedTeacherTrainingTests
{
    /// <summary>A batch that knows its examples' positions in the cache.</summary>
    private sealed record Indexed(Tensor Features, Tensor Examples);

    private sealed class LossRecorder(List<double> losses) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => losses.Add(report.Loss);
    }

    private static (List<DistillationBatch<Indexed>> Data, string Cache) Setup(TemporaryFolder folder, nn.Module<Tensor, Tensor> teacher, int k, double temperature)
    {
        List<DistillationBatch<Tensor>> plain = Data(teacher, 6, 16, 7);
        using var writer = new TeacherCacheWriter(folder.PathOf("teacher.kdtc"), k, temperature);
        var data = new List<DistillationBatch<Indexed>>();
        using (no_grad())
        {
            for (int i = 0; i < plain.Count; i++)
            {
                writer.Append(teacher.call(plain[i].Inputs));
                Tensor examples = arange(i * 16L, (i + 1) * 16L).DetachFromDisposeScope();
                data.Add(new DistillationBatch<Indexed>(new Indexed(plain[i].Inputs, examples), plain[i].Labels));
            }
        }
        return (data, writer.Complete());
    }

    private static IModuleModel<Indexed> Adapt(nn.Module<Tensor, Tensor> module) =>
        DistillationModel.FromDelegate<nn.Module<Tensor, Tensor>, Indexed>(module, (m, batch, _) => new ModelOutput(m.call(batch.Features)));

    [Fact]
    public void Training_from_a_full_cache_follows_training_with_the_running_teacher_to_float16_precision()
    {
        using var folder = new TemporaryFolder();
        var teacher = Teacher();
        var (data, path) = Setup(folder, teacher, k: Classes, temperature: 2.0);
        using var cache = TeacherCache.Open(path);
        DistillationObjective Objective() => DistillationObjective.Create().SoftTargets(0.7, temperature: 2.0).HardTargets(0.3).Build();

        List<double> Run(IDistillationModel<Indexed> teacherModel)
        {
            var losses = new List<double>();
            new DistillationTrainer<Indexed>(teacherModel, Adapt(Student()), Objective(), Options(12)).Train(data, callbacks: [new LossRecorder(losses)]);
            return losses;
        }

        List<double> running = Run(Adapt(teacher));
        List<double> cached = Run(new CachedTeacher<Indexed>(cache, b => b.Examples));

        cached.Should().HaveCount(12);
        for (int i = 0; i < running.Count; i++) cached[i].Should().BeApproximately(running[i], 2e-3 * running[i], "step {0}", i + 1);
    }

    [Fact]
    public void A_cache_written_at_another_temperature_or_read_by_another_divergence_is_refused_clearly()
    {
        using var folder = new TemporaryFolder();
        var teacher = Teacher();
        var (data, path) = Setup(folder, teacher, k: 3, temperature: 2.0);
        using var cache = TeacherCache.Open(path);
        var cached = new CachedTeacher<Indexed>(cache, b => b.Examples);

        // Both are found when the trainer is constructed, before any step runs.
        Action wrongTemperature = () => _ = new DistillationTrainer<Indexed>(cached, Adapt(Student()), DistillationObjective.Create().SoftTargets(1.0, temperature: 4.0).Build(), Options(1));
        wrongTemperature.Should().Throw<ArgumentException>().WithMessage("Term \"soft\" runs at temperature 4 but teacher 0's cache was written at temperature 2*");

        // A schedule that starts at the cache's temperature and moves away from it is refused too, not at its second step.
        Action scheduled = () => _ = new DistillationTrainer<Indexed>(cached, Adapt(Student()),
            DistillationObjective.Create().SoftTargets(1.0, temperature: Schedule.Linear(2, 1, 10)).Build(), Options(10));
        scheduled.Should().Throw<ArgumentException>().WithMessage("Term \"soft\" has a temperature schedule (2 to 1), but teacher 0's cache was written at one temperature (2)*");
        Action flat = () => _ = new DistillationTrainer<Indexed>(cached, Adapt(Student()),
            DistillationObjective.Create().SoftTargets(1.0, temperature: Schedule.Linear(2, 2, 10)).Build(), Options(10));
        flat.Should().NotThrow("a schedule from 2 to 2 is the constant 2");

        Action reverse = () => _ = new DistillationTrainer<Indexed>(cached, Adapt(Student()), DistillationObjective.Create().ReverseKL(1.0, temperature: 2.0).Build(), Options(1));
        reverse.Should().Throw<ArgumentException>().WithMessage("Term \"reverse_kl\" needs teacher 0's logits, which provides only TopKTargets*");

        Action hidden = () => _ = new DistillationTrainer<Indexed>(cached, Adapt(Student()), DistillationObjective.Create()
            .Term("needs_hidden", 1.0, c => c.Student.Logits.sum(), teacherNeeds: new OutputRequest(HiddenStates: true)).Build(), Options(1));
        hidden.Should().Throw<ArgumentException>().WithMessage("Term \"needs_hidden\" needs HiddenStates from teacher 0, which provides only TopKTargets*");
    }

    [Fact]
    public void Evaluation_with_a_cached_teacher_reports_the_student_and_no_teacher_metric()
    {
        using var folder = new TemporaryFolder();
        var teacher = Teacher();
        var (data, path) = Setup(folder, teacher, k: 2, temperature: 1.0);
        using var cache = TeacherCache.Open(path);
        var student = Student();
        var trainer = new DistillationTrainer<Indexed>(new CachedTeacher<Indexed>(cache, b => b.Examples), Adapt(student),
            DistillationObjective.Create().SoftTargets(1.0, temperature: 1.0).Build(), Options(6));

        TrainingResult result = trainer.Train(data, evaluationData: data);

        // The student's accuracy, counted here from its own predictions after training.
        student.eval();
        long correct = 0, rows = 0;
        using (no_grad())
        {
            foreach (DistillationBatch<Indexed> batch in data)
            {
                long[] predicted = student.call(batch.Inputs.Features).argmax(-1).data<long>().ToArray(), labels = batch.Labels!.data<long>().ToArray();
                correct += predicted.Zip(labels).Count(p => p.First == p.Second);
                rows += labels.Length;
            }
        }
        result.LastEvaluation!.StudentMetric.Should().Be((double)correct / rows);
        double.IsNaN(result.LastEvaluation.TeacherMetric).Should().BeTrue();
    }
}
