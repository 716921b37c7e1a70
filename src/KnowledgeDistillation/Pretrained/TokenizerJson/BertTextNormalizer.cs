using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>
/// Hugging Face's <c>BertNormalizer</c> (the tokenizers library's, which every BERT <c>tokenizer.json</c> names), step
/// for step: drop NUL, U+FFFD and every "other" character (Cc, Cf, Cs, Co) except tab, newline and carriage return
/// (unassigned code points, Cn, stay: the Rust library's category tables do not list them);
/// turn whitespace into a space; surround CJK ideographs with spaces; strip accents (NFD, then drop Mn, and leave the
/// text decomposed); lowercase.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers' own BERT normaliser drops only Cc characters (so zero-width joiners and other Cf characters
/// stay inside words) and recomposes the text at the end (so a Hangul syllable, whose decomposition is three jamo the
/// vocabulary holds, becomes [UNK]). Both change ids of real text; this class is what <see cref="PretrainedTokenizer"/>
/// gives Microsoft.ML.Tokenizers instead.
/// </remarks>
internal sealed class BertTextNormalizer(bool lowercase, bool stripAccents, bool separateCjk) : Normalizer
{
    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());

    public override string Normalize(string original)
    {
        var text = new StringBuilder(original.Length + 8);
        foreach (Rune r in original.EnumerateRunes())
        {
            if (r.Value is 0 or 0xFFFD || IsControl(r)) continue;
            if (Rune.IsWhiteSpace(r)) text.Append(' ');
            else if (separateCjk && IsCjkIdeograph(r.Value))
            {
                text.Append(' ');
                Append(text, r);
                text.Append(' ');
            }
            else
            {
                Append(text, r);
            }
        }
        string result = text.ToString();
        if (stripAccents && !Ascii.IsValid(result))
        {
            string decomposed = result.Normalize(NormalizationForm.FormD);
            text.Clear();
            foreach (Rune r in decomposed.EnumerateRunes())
            {
                if (Rune.GetUnicodeCategory(r) != UnicodeCategory.NonSpacingMark) Append(text, r);
            }
            result = text.ToString();
        }
        return lowercase ? result.ToLowerInvariant() : result;
    }

    /// <summary>Appends one rune without a string per rune: this runs over every text the tokenizer sees.</summary>
    private static void Append(StringBuilder text, Rune r)
    {
        Span<char> units = stackalloc char[2];
        text.Append(units[..r.EncodeToUtf16(units)]);
    }

    /// <summary>Tab, newline and carriage return count as whitespace; every other control, format, surrogate or private-use character is removed (unassigned ones, U+FFFF among them, are kept, as in the Rust library).</summary>
    private static bool IsControl(Rune r) => r.Value is not ('\t' or '\n' or '\r') && Rune.GetUnicodeCategory(r) is
        UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse;

    /// <summary>The CJK Unified Ideographs blocks BERT's tokenizer gives one token each (Hangul, Hiragana and Katakana are not among them).</summary>
    private static bool IsCjkIdeograph(int c) =>
        c is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF) or (>= 0x2A700 and <= 0x2B73F)
            or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B820 and <= 0x2CEAF) or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F);
}
