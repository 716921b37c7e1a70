namespace KnowledgeDistillation.Remote.OpenAi;

/// <summary>Which OpenAI-compatible server an <see cref="OpenAiCompatibleTeacher{TInput}"/> reads and how many log-probabilities per position.</summary>
public sealed class OpenAiTeacherOptions : TeacherConnectionOptions
{
    /// <summary>The server's kind; it decides the endpoint, the request and the answer's layout (default vLLM).</summary>
    public OpenAiCompatibleServer Server { get; set; } = OpenAiCompatibleServer.Vllm;

    /// <summary>The model name the server serves (vLLM requires it; llama.cpp ignores it).</summary>
    public string? Model { get; set; }

    /// <summary>Token log-probabilities kept per position, 1 … 1000 (vLLM's <c>--max-logprobs</c> caps what it answers, 20 by default).</summary>
    public int TopK { get; set; } = 20;

    /// <summary>The teacher's vocabulary size; every returned token id must be below it.</summary>
    public long VocabularySize { get; set; }

    /// <summary>
    /// Maps a returned token's text to its id, for answers that name tokens by text only (vLLM without
    /// <c>return_tokens_as_token_ids</c>); typically a tokenizer's vocabulary lookup. Null: such answers are refused.
    /// </summary>
    public Func<string, int?>? TokenIdOf { get; set; }

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        if (!Enum.IsDefined(Server)) throw new ArgumentException($"Server must be one of {string.Join(", ", Enum.GetNames<OpenAiCompatibleServer>())}; got {(int)Server}.", nameof(Server));
        if (Server == OpenAiCompatibleServer.Vllm && string.IsNullOrWhiteSpace(Model))
        {
            throw new ArgumentException("Model must name the model the vLLM server serves (its --served-model-name or model path); got none.", nameof(Model));
        }
        if (TopK is < 1 or > 1000) throw new ArgumentException($"TopK must be 1 … 1000; got {TopK}.", nameof(TopK));
        if (VocabularySize < 1) throw new ArgumentException($"VocabularySize must be the teacher's vocabulary size, at least 1; got {VocabularySize}.", nameof(VocabularySize));
        if (TopK > VocabularySize) throw new ArgumentException($"TopK must be at most VocabularySize ({VocabularySize}); got {TopK}.", nameof(TopK));
    }
}
