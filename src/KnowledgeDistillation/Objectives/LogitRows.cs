namespace KnowledgeDistillation.Objectives;

/// <summary>Which rows (examples or tokens) a logit term distils.</summary>
public enum LogitRows
{
    /// <summary>
    /// Rows whose label is not the ignore index (−100), within the batch's mask. The right choice when labels mark what
    /// is learnt: classification, causal-LM batches whose prompts or padding are labelled −100 (TRL's GKD does the same).
    /// On masked-LM batches this is only the ~15% of tokens that were masked.
    /// </summary>
    Labelled,

    /// <summary>
    /// Every row the mask keeps (the batch's mask, else the attention mask), whatever its label: every real token of a
    /// masked-LM batch, as Hugging Face's DistilBERT distiller does by default (<c>restrict_ce_to_mask</c> off).
    /// </summary>
    EveryToken,
}
