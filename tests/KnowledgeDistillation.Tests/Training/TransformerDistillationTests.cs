using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Training;

public class TransformerDistillationTests
{
    [Fact]
    public void A_half_depth_narrower_GPT_student_trains_on_logits_hidden_states_and_attention_of_two_teachers()
    {
        GptConfig config = TinyModels.Gpt() with { Layers = 4, Dropout = 0.1 };
        GptModel teacherA = TinyModels.GptModel(seed: 1, config: config), teacherB = TinyModels.GptModel(seed: 2, config: config);
        GptModel student = StudentFactory.FromTeacher(teacherA, new StudentOptions { Layers = 2, Width = 12, Heads = 3 }).Model;
        LayerMap map = LayerSelection.UniformSpread.Map(config, student.Config, includeEmbeddings: true);
        DistillationObjective objective = DistillationObjective.Create()
            .TeacherWeights(2, 1)
            .SoftTargets(1.0, temperature: 2.0)
            .HardTargets(0.5)
            .HiddenStateMse(0.1, map, teacher: 1)
            .AttentionMse(0.1, map, AttentionMapKind.Scores)
            .Build();
        manual_seed(3);
        List<DistillationBatch<TokenBatch>> data = Enumerable.Range(0, 6).Select(_ =>
        {
            Tensor ids = randint(0, config.VocabSize, [4, 10]).DetachFromDisposeScope();
            Tensor labels = ids.roll(-1, 1).index_put_(tensor(-100L), TensorIndex.Colon, TensorIndex.Single(-1)).DetachFromDisposeScope();
            return new DistillationBatch<TokenBatch>(new TokenBatch(ids), labels);
        }).ToList();
        var trainer = new DistillationTrainer<TokenBatch>([teacherA, teacherB], student, objective, TrainingFixtures.Options(30, o => o.LearningRate = 3e-3));
        double first = double.NaN;
        var firstStep = new FirstLoss(loss => first = loss);

        TrainingResult result = trainer.Train(data, data.Take(2), callbacks: [firstStep]);

        result.LastStep!.Terms.Keys.Should().BeEquivalentTo("soft", "hard", "hidden_mse", "attention_mse");
        result.LastStep.Loss.Should().BeLessThan(first, "thirty steps reduce the objective");
        result.LastStep.Rows.Should().Be(4 * 9, "the last position of each sequence is ignored");
        result.LastEvaluation!.MetricName.Should().Be("perplexity");
        double studentPerplexity = Perplexity(student, data.Take(2)), teacherPerplexity = Perplexity(teacherA, data.Take(2));
        result.LastEvaluation.StudentMetric.Should().BeApproximately(studentPerplexity, 1e-4 * studentPerplexity);
        result.LastEvaluation.TeacherMetric.Should().BeApproximately(teacherPerplexity, 1e-4 * teacherPerplexity, "the first teacher is the one evaluated");
        result.LastEvaluation.Retention.Should().BeApproximately(teacherPerplexity / studentPerplexity, 1e-4);
        objective.parameters().Should().NotBeEmpty("the width-12 student's hidden states are projected to width 24");
    }

    /// <summary>exp of the mean negative log-likelihood over labelled tokens, with the log-softmax taken in float64 here.</summary>
    private static double Perplexity(GptModel model, IEnumerable<DistillationBatch<TokenBatch>> data)
    {
        bool training = model.training;
        model.eval();
        double total = 0;
        long count = 0;
        using (no_grad())
        {
            foreach (DistillationBatch<TokenBatch> batch in data)
            {
                double[] logProbs = model.call(batch.Inputs.InputIds).to(ScalarType.Float64).log_softmax(-1).data<double>().ToArray();
                long[] labels = batch.Labels!.data<long>().ToArray();
                long vocab = model.Config.VocabSize;
                for (int i = 0; i < labels.Length; i++)
                {
                    if (labels[i] == -100) continue;
                    total -= logProbs[i * vocab + labels[i]];
                    count++;
                }
            }
        }
        model.train(training);
        return Math.Exp(total / count);
    }

    private sealed class FirstLoss(Action<double> record) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control)
        {
            if (report.Step == 1) record(report.Loss);
        }
    }
}
