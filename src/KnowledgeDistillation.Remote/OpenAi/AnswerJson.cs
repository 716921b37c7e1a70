using System.Text.Json;
using System.Text.Json.Nodes;

namespace KnowledgeDistillation.Remote.OpenAi;

/// <summary>Reading a server's JSON answer, with failures reported as the answer's fault.</summary>
internal static class AnswerJson
{
    /// <exception cref="InvalidDataException">The answer is not JSON; the message names <paramref name="server"/>.</exception>
    public static JsonNode? Parse(ReadOnlySpan<byte> answer, string server)
    {
        try
        {
            return JsonNode.Parse(answer);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"The {server} answer is not JSON: {e.Message}", e);
        }
    }
}
