using System.Globalization;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>SentencePiece's byte-fallback tokens, <c>&lt;0xNN&gt;</c> (two upper-case hex digits): one per byte a vocabulary lacks.</summary>
internal static class ByteFallbackToken
{
    /// <summary>The token that stands for <paramref name="value"/>.</summary>
    public static string Name(byte value) => $"<0x{value:X2}>";

    /// <summary>Whether <paramref name="token"/> is a byte-fallback token, and its byte (either case of hex digit is read, as the Rust decoder does).</summary>
    public static bool TryParse(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>' &&
            byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
