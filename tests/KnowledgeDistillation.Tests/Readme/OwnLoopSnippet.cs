using KnowledgeDistillation.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Readme;

/// <summary>
/// The README's "plug into your own loop" code, compiled and run here. The lines between the snippet markers are
/// compared with the README's code block by <see cref="ReadmeSnippetTests"/>, so the two cannot drift apart.
/// </summary>
internal static class OwnLoopSnippet
{
    public static void Train(nn.Module<Tensor, Tensor> teacher, nn.Module<Tensor, Tensor> student, IEnumerable<(Tensor Inputs, Tensor Labels)> batches)
    {
        // snippet-begin
        var soft = new SoftTargetKLLoss(temperature: 2.0);  // KL(teacher ‖ student) at T = 2, times T²
        var hard = new HardTargetCrossEntropyLoss();        // cross-entropy against the true labels
        var optimizer = optim.AdamW(student.parameters(), lr: 1e-3);
        teacher.eval();

        foreach (var (inputs, labels) in batches)
        {
            using var scope = NewDisposeScope();
            Tensor teacherLogits;
            using (no_grad()) teacherLogits = teacher.call(inputs);
            Tensor studentLogits = student.call(inputs);

            Tensor loss = 0.9 * soft.call(studentLogits, teacherLogits) + 0.1 * hard.call(studentLogits, labels);

            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        }
        // snippet-end
    }
}
