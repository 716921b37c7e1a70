using KnowledgeDistillation.Caching;

namespace KnowledgeDistillation.Remote;

/// <summary>
/// What a teacher server serves, as <c>GET /v1/teacher</c> answers it (JSON): the teacher's fingerprint and the settings
/// its outputs depend on, and the limits of one request. Replicas of one teacher answer the same.
/// </summary>
/// <param name="Fingerprint">SHA-256 of the teacher's weights (or identity) and of the output settings (<see cref="TeacherFingerprint"/>).</param>
/// <param name="Model">A human-readable name of the model.</param>
/// <param name="Content">Top-k probabilities, or values (pooled features, logits).</param>
/// <param name="TopK">k, for top-k content (0 otherwise).</param>
/// <param name="Temperature">T of the top-k probabilities (1 otherwise).</param>
/// <param name="Classes">The width of the teacher's output: its classes (vocabulary) for top-k content, the values per row otherwise.</param>
/// <param name="VocabularySize">Token ids the teacher reads are in [0, VocabularySize).</param>
/// <param name="MaxSequences">Sequences per request.</param>
/// <param name="MaxLength">Tokens per sequence.</param>
public sealed record TeacherDescription(string Fingerprint, string Model, TeacherCacheContent Content, int TopK, double Temperature, long Classes, long VocabularySize, int MaxSequences, int MaxLength)
{
    /// <summary>The settings that change the outputs, to name in a mismatch.</summary>
    public string Settings => Content == TeacherCacheContent.TopKProbabilities ? $"top-{TopK} at T = {Temperature:R}" : Content.ToString();
}
