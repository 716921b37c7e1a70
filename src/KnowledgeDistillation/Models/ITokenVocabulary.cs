namespace KnowledgeDistillation.Models;

/// <summary>
/// A tokenizer seen as its vocabulary: how many ids it has and what text they decode to. What the objectives need of a
/// tokenizer (to check that two models' logits line up), without depending on where the tokenizer came from.
/// </summary>
public interface ITokenVocabulary
{
    /// <summary>The number of token ids, special tokens included.</summary>
    int VocabularySize { get; }

    /// <summary>The text of a sequence of ids.</summary>
    string Decode(IEnumerable<int> ids);
}
