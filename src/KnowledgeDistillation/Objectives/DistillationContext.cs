using KnowledgeDistillation.Models;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Objectives;

/// <summary>Everything a term sees in one micro-batch.</summary>
/// <param name="Teachers">One output per teacher, in the order the teachers were given (empty when no term uses a teacher).</param>
/// <param name="Student">The student's output.</param>
/// <param name="Labels">The batch's labels (−100 = ignore), or null.</param>
/// <param name="Mask">Rows/tokens to keep (the batch's mask, else the student's attention mask), or null.</param>
/// <param name="Step">The optimizer step (0-based), for schedules.</param>
public sealed record DistillationContext(IReadOnlyList<ModelOutput> Teachers, ModelOutput Student, Tensor? Labels, Tensor? Mask, long Step)
{
    /// <summary>The first teacher's output.</summary>
    public ModelOutput Teacher => Teachers[0];

    /// <summary>The examples' positions in the training set, <c>[N]</c>, when the batch gives them (<c>DistillationBatch.ExampleIndices</c>); memory-bank terms (CRD) need them.</summary>
    public Tensor? ExampleIndices { get; init; }

    /// <summary>The batch's inputs as the models received them, for terms that read more than outputs and labels (the cross-tokenizer terms read a <c>CrossTokenizerBatch</c>'s second tokenization and alignment).</summary>
    public object? Inputs { get; init; }
}
