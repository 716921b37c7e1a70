using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>
/// A tokenizer.json pattern: <c>{"String": …}</c>, matched literally, or <c>{"Regex": …}</c>, an Oniguruma expression
/// (what the Rust library compiles) run by .NET's engine, which reads the syntax these files use (<c>\p{L}</c>,
/// <c>(?i:…)</c>, look-ahead) the same way.
/// </summary>
/// <remarks>
/// One difference needs care: .NET matches UTF-16 units, so a character outside the Basic Multilingual Plane (an emoji,
/// 𝐀, 𠀀) is two surrogates that <c>\p{L}</c> never matches, where Oniguruma sees one letter. Before matching, each such
/// character is replaced by one BMP stand-in of the same Unicode category (none of them whitespace, none inside the CJK
/// ranges the files name), and match positions are mapped back.
/// </remarks>
internal sealed class TextPattern
{
    private readonly string? _literal;
    private readonly Regex? _regex;

    private TextPattern(string source, string? literal, Regex? regex)
    {
        Source = source;
        _literal = literal;
        _regex = regex;
    }

    /// <summary>The pattern as the file gives it, for messages.</summary>
    public string Source { get; }

    public static TextPattern Literal(string text) => new(text, text, null);

    /// <exception cref="ArgumentException">The expression does not compile in .NET.</exception>
    public static TextPattern Expression(string pattern) => new(pattern, null, new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled, TimeSpan.FromSeconds(10)));

    /// <summary>The non-overlapping matches in <paramref name="text"/>, left to right, as (start, end) character positions.</summary>
    public List<(int Start, int End)> Matches(string text)
    {
        var found = new List<(int, int)>();
        if (_literal is not null)
        {
            if (_literal.Length == 0) return found;
            for (int at = text.IndexOf(_literal, StringComparison.Ordinal); at >= 0; at = text.IndexOf(_literal, at + _literal.Length, StringComparison.Ordinal))
            {
                found.Add((at, at + _literal.Length));
            }
            return found;
        }
        if (!HasSurrogates(text))
        {
            for (Match m = _regex!.Match(text); m.Success; m = m.NextMatch()) found.Add((m.Index, m.Index + m.Length));
            return found;
        }
        (string stand, int[] origin) = WithStandIns(text);
        for (Match m = _regex!.Match(stand); m.Success; m = m.NextMatch()) found.Add((origin[m.Index], origin[m.Index + m.Length]));
        return found;
    }

    /// <summary><paramref name="text"/> with every match replaced by <paramref name="content"/>.</summary>
    public string Replace(string text, string content)
    {
        List<(int Start, int End)> matches = Matches(text);
        if (matches.Count == 0) return text;
        var result = new StringBuilder(text.Length);
        int from = 0;
        foreach ((int start, int end) in matches)
        {
            result.Append(text, from, start - from).Append(content);
            from = end;
        }
        return result.Append(text, from, text.Length - from).ToString();
    }

    private static bool HasSurrogates(string text)
    {
        foreach (char c in text)
        {
            if (char.IsSurrogate(c)) return true;
        }
        return false;
    }

    /// <summary>The text with each astral character as one stand-in, and for each position of it (and its end) the position in the text.</summary>
    private static (string Text, int[] Origin) WithStandIns(string text)
    {
        var stand = new StringBuilder(text.Length);
        var origin = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length;)
        {
            origin.Add(i);
            if (Rune.TryGetRuneAt(text, i, out Rune r) && r.Utf16SequenceLength == 2)
            {
                stand.Append(StandIn(Rune.GetUnicodeCategory(r)));
                i += 2;
            }
            else
            {
                stand.Append(text[i]);
                i++;
            }
        }
        origin.Add(text.Length);
        return (stand.ToString(), [.. origin]);
    }

    /// <summary>A BMP character of each category: not whitespace, not ASCII, not in any range a released pattern names.</summary>
    private static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u0531',
        UnicodeCategory.LowercaseLetter => '\u0561',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\uA000',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u00B2',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u00AB',
        UnicodeCategory.FinalQuotePunctuation => '\u00BB',
        UnicodeCategory.OtherPunctuation => '\u00B6',
        UnicodeCategory.MathSymbol => '\u00D7',
        UnicodeCategory.CurrencySymbol => '\u00A2',
        UnicodeCategory.ModifierSymbol => '\u00B4',
        UnicodeCategory.OtherSymbol => '\u00A9',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.PrivateUse => '\uE000',
        _ => '\u0378', // unassigned
    };
}
