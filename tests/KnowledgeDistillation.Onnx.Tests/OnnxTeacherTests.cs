using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Onnx;
using KnowledgeDistillation.Training;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>An ONNX model as the teacher: the same outputs as the TorchSharp model it was exported from, live in the trainer and through a teacher cache.</summary>
public class OnnxTeacherTests
{
    private static (nn.Module<Tensor, Tensor> Model, string Path) Exported(long batch = -1, string[]? hidden = null)
    {
        manual_seed(5);
        var model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 6));
        model.eval();
        string path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"kd-onnx-teacher-{Guid.NewGuid():N}.onnx");
        OnnxExport.Export(model, [batch, 12], path, options: new OnnxExportOptions { HiddenStateLayers = hidden ?? [] });
        return (model, path);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(4)]
    public void Logits_and_hidden_states_equal_the_exported_models_for_any_batch_size(long exportedBatch)
    {
        (nn.Module<Tensor, Tensor> model, string path) = Exported(exportedBatch, ["1", "3"]);
        try
        {
            using var teacher = new OnnxTeacher(path, new OnnxTeacherOptions { LogitsOutput = "output", HiddenStateOutputs = ["hidden.1", "hidden.3"] });
            teacher.Provides.Should().Be(ModelOutputKinds.Logits | ModelOutputKinds.HiddenStates);
            foreach (long rows in new long[] { 1, 6, 9 })
            {
                using var scope = NewDisposeScope();
                Tensor x = randn(rows, 12);
                using ModelOutput output = teacher.Run(x, new OutputRequest(HiddenStates: true));
                using (no_grad())
                {
                    (output.Logits - model.call(x)).abs().max().item<float>().Should().BeLessThan(1e-4f, $"{rows} rows");
                    var seq = (TorchSharp.Modules.Sequential)(object)model;
                    Tensor relu = ((nn.Module<Tensor, Tensor>)seq[1]).call(((nn.Module<Tensor, Tensor>)seq[0]).call(x));
                    (output.HiddenStates![0] - relu).abs().max().item<float>().Should().BeLessThan(1e-4f);
                    output.HiddenStates[1].shape.Should().Equal(rows, 16);
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_student_trains_live_from_the_ONNX_teacher_and_from_its_cache()
    {
        (nn.Module<Tensor, Tensor> model, string path) = Exported();
        using var folder = new TempFolder();
        try
        {
            using var teacher = new OnnxTeacher(path);
            manual_seed(6);
            Tensor inputs = randn(96, 12);
            var data = Enumerable.Range(0, 6).Select(i => new DistillationBatch<Tensor>(inputs.narrow(0, i * 16, 16), null) { }).ToList();

            manual_seed(7);
            var student = nn.Sequential(nn.Linear(12, 6));
            double Gap()
            {
                using var noGrad = no_grad();
                return (student.call(inputs) - model.call(inputs)).pow(2).mean().item<float>();
            }
            double before = Gap();
            // The control: the same student trained with the exported TorchSharp model itself as the teacher. The ONNX
            // teacher's logits equal it to 1e-4, so the two students must agree; a teacher that scaled, shifted or
            // reordered its logits would train another student.
            var liveStudent = nn.Sequential(nn.Linear(12, 6));
            liveStudent.load_state_dict(student.state_dict());
            DistillationTrainer<Tensor> Trainer(IDistillationModel<Tensor> from, nn.Module<Tensor, Tensor> to) => new(from, DistillationModel.FromLogits(to),
                DistillationObjective.Create().SoftTargets(1.0, temperature: 2.0).Build(), new DistillationTrainerOptions { Epochs = 20, LearningRate = 1e-2, Device = "cpu" });
            Trainer(DistillationModel.FromLogits(model), liveStudent).Train(data);

            Trainer(teacher, student).Train(data);

            Gap().Should().BeLessThan(before / 2, "the student moves towards the ONNX teacher (from {0})", before);
            using (no_grad())
            {
                (student.call(inputs) - liveStudent.call(inputs)).abs().max().item<float>().Should().BeLessThan(1e-3f, "the ONNX teacher trains the student the live teacher trains");
            }

            // Label the transfer set once through the ONNX teacher, then read it back: the cache holds the teacher's top-k.
            string cachePath = System.IO.Path.Combine(folder.Path, "teacher.cache");
            using (var writer = new TeacherCacheWriter(cachePath, topK: 3, temperature: 2.0))
            {
                foreach (DistillationBatch<Tensor> batch in data)
                {
                    using ModelOutput output = teacher.Run(batch.Inputs, OutputRequest.LogitsOnly);
                    writer.Append(output.Logits);
                }
                writer.Complete();
            }
            using var cache = TeacherCache.Open(cachePath);
            cache.Examples.Should().Be(96);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Bad_input_names_the_output_the_shape_or_the_file()
    {
        (_, string path) = Exported(4);
        using var folder = new TempFolder();
        try
        {
            ((Action)(() => new OnnxTeacher(path, new OnnxTeacherOptions { LogitsOutput = "logits" }))).Should().Throw<ArgumentException>()
                .WithMessage("*has no output \"logits\"; its outputs are: output.*");
            using var teacher = new OnnxTeacher(path);
            ((Action)(() => teacher.Run(randn(3, 11), OutputRequest.LogitsOnly))).Should().Throw<ArgumentException>()
                .WithMessage("The ONNX teacher's input \"input\" takes [N, 12]; got [3, 11].*");
            ((Action)(() => teacher.Run(randn(3, 12), new OutputRequest(HiddenStates: true)))).Should().Throw<NotSupportedException>();
            string notOnnx = System.IO.Path.Combine(folder.Path, "model.onnx");
            File.WriteAllText(notOnnx, "this is not a protobuf");
            ((Action)(() => new OnnxTeacher(notOnnx))).Should().Throw<InvalidDataException>().WithMessage($"{notOnnx} could not be loaded as an ONNX model*");
        }
        finally
        {
            File.Delete(path);
        }
    }

    private sealed class TempFolder : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("kd-onnx-").FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
