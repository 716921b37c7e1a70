namespace KnowledgeDistillation.Remote.OpenAi;

/// <summary>The inference servers an <see cref="OpenAiCompatibleTeacher{TInput}"/> reads log-probabilities from.</summary>
public enum OpenAiCompatibleServer
{
    /// <summary>
    /// vLLM's OpenAI-compatible server: one <c>POST /v1/completions</c> per batch, every sequence a prompt of token ids,
    /// <c>prompt_logprobs</c> for every position but the last and the one generated token's <c>logprobs</c> for the last.
    /// </summary>
    Vllm,

    /// <summary>
    /// llama.cpp's <c>llama-server</c>: one <c>POST /completion</c> per batch with every prefix of every sequence as a
    /// prompt of token ids, <c>n_predict = 1</c> and <c>n_probs = k</c>; it answers log-probabilities only for generated
    /// tokens, so position t is the next-token distribution after the prefix ending at t (prompt caching makes each
    /// prefix cost one token).
    /// </summary>
    LlamaCpp,
}
