using System.Globalization;
using System.Text;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>A tokenizer.json normaliser: changes the text before it is split, keeping each character's origin.</summary>
internal abstract class TextNormalizer
{
    public abstract NormalizedText Apply(NormalizedText text);
}

/// <summary><c>NFC</c>, <c>NFD</c>, <c>NFKC</c>, <c>NFKD</c>.</summary>
internal sealed class UnicodeFormNormalizer(NormalizationForm form) : TextNormalizer
{
    public override NormalizedText Apply(NormalizedText text) =>
        text.Text.IsNormalized(form) ? text : text.MapChunks(s => s.Normalize(form));
}

/// <summary><c>Lowercase</c>: each character's full lower-case mapping (İ becomes i + combining dot, as in Rust).</summary>
internal sealed class LowercaseNormalizer : TextNormalizer
{
    public override NormalizedText Apply(NormalizedText text) => text.MapChunks(Lower);

    internal static string Lower(string s)
    {
        var result = new StringBuilder(s.Length);
        foreach (Rune r in s.EnumerateRunes())
        {
            if (r.Value == 0x130) result.Append("i\u0307");
            else result.Append(Rune.ToLowerInvariant(r).ToString());
        }
        return result.ToString();
    }
}

/// <summary><c>Strip</c>: whitespace removed from the left and/or right end.</summary>
internal sealed class StripNormalizer(bool left, bool right) : TextNormalizer
{
    public override NormalizedText Apply(NormalizedText text)
    {
        int from = 0, to = text.Length;
        if (left) while (from < to && char.IsWhiteSpace(text.Text[from])) from++;
        if (right) while (to > from && char.IsWhiteSpace(text.Text[to - 1])) to--;
        return from == 0 && to == text.Length ? text : text.Slice(from, to);
    }
}

/// <summary><c>StripAccents</c>: combining non-spacing marks removed (the text is expected decomposed, as Hugging Face documents).</summary>
internal sealed class StripAccentsNormalizer : TextNormalizer
{
    public override NormalizedText Apply(NormalizedText text)
    {
        NormalizedText.Builder builder = text.Rebuild();
        for (int i = 0; i < text.Length;)
        {
            Rune r = Rune.GetRuneAt(text.Text, i);
            int next = i + r.Utf16SequenceLength;
            if (Rune.GetUnicodeCategory(r) != UnicodeCategory.NonSpacingMark) builder.Keep(i, next);
            i = next;
        }
        return builder.Build();
    }
}

/// <summary><c>Replace</c>: every match of the pattern becomes the content.</summary>
internal sealed class ReplaceNormalizer(TextPattern pattern, string content) : TextNormalizer
{
    public override NormalizedText Apply(NormalizedText text)
    {
        List<(int Start, int End)> matches = pattern.Matches(text.Text);
        if (matches.Count == 0) return text;
        NormalizedText.Builder builder = text.Rebuild();
        int from = 0;
        foreach ((int start, int end) in matches)
        {
            builder.Keep(from, start).Append(content, start, end);
            from = end;
        }
        return builder.Keep(from, text.Length).Build();
    }
}

/// <summary><c>Prepend</c>: a string put before any non-empty text.</summary>
internal sealed class PrependNormalizer(string prefix) : TextNormalizer
{
    public override NormalizedText Apply(NormalizedText text) =>
        text.Length == 0 ? text : text.Rebuild().Append(prefix, 0, 0).Keep(0, text.Length).Build();
}

/// <summary><c>BertNormalizer</c>, through the same steps as the vocab.txt reader's (<see cref="BertTextNormalizer"/>).</summary>
internal sealed class BertJsonNormalizer(bool cleanText, bool chineseCharacters, bool stripAccents, bool lowercase) : TextNormalizer
{
    private readonly BertTextNormalizer _normalizer = new(lowercase, stripAccents, chineseCharacters);

    public override NormalizedText Apply(NormalizedText text)
    {
        // BertTextNormalizer always cleans; Hugging Face skips that step when clean_text is false, which no released file does.
        if (!cleanText) throw new NotSupportedException("BertNormalizer with clean_text false is not supported.");
        return text.MapChunks(s => _normalizer.Normalize(s));
    }
}

/// <summary><c>Sequence</c>: the normalisers in order.</summary>
internal sealed class SequenceNormalizer(IReadOnlyList<TextNormalizer> steps) : TextNormalizer
{
    public override NormalizedText Apply(NormalizedText text)
    {
        foreach (TextNormalizer step in steps) text = step.Apply(text);
        return text;
    }
}
