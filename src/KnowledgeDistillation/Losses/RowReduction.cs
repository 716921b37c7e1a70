namespace KnowledgeDistillation.Losses;

/// <summary>How a loss turns per-row values into one number (a row is an example of <c>[N, C]</c> inputs or a token of <c>[B, S, C]</c>).</summary>
public enum RowReduction
{
    /// <summary>
    /// Σ over kept rows / number of kept rows (0 when none is kept). The default; for a KL loss this is Hugging Face's
    /// DistilBERT distiller (<c>KLDivLoss(reduction="batchmean")</c> over the selected tokens) and torchdistill's batchmean on 2-D logits.
    /// </summary>
    Mean,

    /// <summary>
    /// Σ over kept rows. Divide by a count you choose — e.g. TRL's <c>num_items_in_batch</c>, the kept rows of every
    /// micro-batch of a step (see <see cref="Rows.Kept"/>) — for a global-token mean under gradient accumulation.
    /// </summary>
    Sum,

    /// <summary>
    /// Σ over kept rows / the input's first dimension (N for <c>[N, C]</c>, B for <c>[B, S, C]</c>), kept or not:
    /// PyTorch's <c>KLDivLoss(reduction="batchmean")</c> applied to unflattened <c>[B, S, C]</c> logits (a per-sequence sum, averaged over sequences).
    /// </summary>
    BatchMean,
}
