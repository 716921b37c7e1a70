using System.Globalization;
using System.Text;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>A tokenizer.json pre-tokenizer: splits a normalised piece into the words the model tokenizes one by one.</summary>
internal abstract class TextPreTokenizer
{
    public abstract void Split(NormalizedText piece, bool firstPiece, List<NormalizedText> words);
}

/// <summary>How a <c>Split</c> pre-tokenizer treats the delimiters it finds (Hugging Face's <c>SplitDelimiterBehavior</c>).</summary>
internal enum DelimiterBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>Cuts a piece at delimiters and joins the parts as the behaviour says; empty parts are dropped.</summary>
internal static class Splitter
{
    public static void Split(NormalizedText piece, List<(int Start, int End)> delimiters, DelimiterBehavior behavior, bool invert, List<NormalizedText> words)
    {
        // The piece as alternating (range, is-delimiter) segments.
        var segments = new List<(int Start, int End, bool Match)>(delimiters.Count * 2 + 1);
        int previous = 0;
        foreach ((int start, int end) in delimiters)
        {
            if (start > previous) segments.Add((previous, start, invert));
            segments.Add((start, end, !invert));
            previous = end;
        }
        if (previous < piece.Length) segments.Add((previous, piece.Length, invert));

        var kept = new List<(int Start, int End)>(segments.Count);
        bool previousMatch = false;
        switch (behavior)
        {
            case DelimiterBehavior.Removed:
                kept.AddRange(segments.Where(s => !s.Match).Select(s => (s.Start, s.End)));
                break;
            case DelimiterBehavior.Isolated:
                kept.AddRange(segments.Select(s => (s.Start, s.End)));
                break;
            case DelimiterBehavior.MergedWithPrevious:
                foreach ((int start, int end, bool match) in segments)
                {
                    if (match && !previousMatch && kept.Count > 0) kept[^1] = (kept[^1].Start, end);
                    else kept.Add((start, end));
                    previousMatch = match;
                }
                break;
            case DelimiterBehavior.MergedWithNext:
                for (int i = segments.Count - 1; i >= 0; i--)
                {
                    (int start, int end, bool match) = segments[i];
                    if (match && !previousMatch && kept.Count > 0) kept[^1] = (start, kept[^1].End);
                    else kept.Add((start, end));
                    previousMatch = match;
                }
                kept.Reverse();
                break;
            case DelimiterBehavior.Contiguous:
                foreach ((int start, int end, bool match) in segments)
                {
                    if (match && previousMatch && kept.Count > 0) kept[^1] = (kept[^1].Start, end);
                    else kept.Add((start, end));
                    previousMatch = match;
                }
                break;
        }
        foreach ((int start, int end) in kept)
        {
            if (end > start) words.Add(piece.Slice(start, end));
        }
    }
}

/// <summary><c>Split</c>: a literal or regular-expression pattern with a delimiter behaviour, optionally inverted.</summary>
internal sealed class PatternSplitPreTokenizer(TextPattern pattern, DelimiterBehavior behavior, bool invert) : TextPreTokenizer
{
    public override void Split(NormalizedText piece, bool firstPiece, List<NormalizedText> words) =>
        Splitter.Split(piece, pattern.Matches(piece.Text), behavior, invert, words);
}

/// <summary><c>ByteLevel</c>: optional prefix space and GPT-2's split, then every UTF-8 byte written as its printable stand-in character.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : TextPreTokenizer
{
    /// <summary>GPT-2's pre-tokenizer expression, as the Rust library compiles it.</summary>
    internal static readonly TextPattern Gpt2Pattern = TextPattern.Expression(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+");

    public override void Split(NormalizedText piece, bool firstPiece, List<NormalizedText> words)
    {
        if (addPrefixSpace && piece.Length > 0 && !piece.Text.StartsWith(' ')) piece = piece.Rebuild().Append(" ", 0, 0).Keep(0, piece.Length).Build();
        var parts = new List<NormalizedText>();
        if (useRegex) Splitter.Split(piece, Gpt2Pattern.Matches(piece.Text), DelimiterBehavior.Isolated, false, parts);
        else if (piece.Length > 0) parts.Add(piece);
        foreach (NormalizedText part in parts) words.Add(ByteAlphabet.Encode(part));
    }
}

/// <summary><c>Metaspace</c>: spaces become the replacement character (▁), one is put before the text as the scheme says, and the text is split before each.</summary>
internal sealed class MetaspacePreTokenizer(char replacement, string prependScheme, bool split) : TextPreTokenizer
{
    public override void Split(NormalizedText piece, bool firstPiece, List<NormalizedText> words)
    {
        NormalizedText.Builder builder = piece.Rebuild();
        bool prepend = prependScheme == "always" || (prependScheme == "first" && firstPiece);
        // As the Rust library's NormalizedString.prepend, nothing is put before an empty piece.
        if (prepend && piece.Length > 0 && !piece.Text.StartsWith(' ') && !piece.Text.StartsWith(replacement)) builder.Append(replacement.ToString(), 0, 0);
        for (int i = 0; i < piece.Length; i++)
        {
            if (piece.Text[i] == ' ') builder.Append(replacement.ToString(), i, i + 1);
            else builder.Keep(i, i + 1);
        }
        NormalizedText replaced = builder.Build();
        if (!split)
        {
            if (replaced.Length > 0) words.Add(replaced);
            return;
        }
        var delimiters = new List<(int, int)>();
        for (int i = 0; i < replaced.Length; i++)
        {
            if (replaced.Text[i] == replacement) delimiters.Add((i, i + 1));
        }
        Splitter.Split(replaced, delimiters, DelimiterBehavior.MergedWithNext, false, words);
    }
}

/// <summary><c>Whitespace</c> (<c>\w+|[^\w\s]+</c>), <c>WhitespaceSplit</c> (whitespace removed), <c>Digits</c>, <c>Punctuation</c>, <c>BertPreTokenizer</c>, <c>CharDelimiterSplit</c>: splits decided character by character.</summary>
internal sealed class CharacterClassPreTokenizer(Func<Rune, bool> isDelimiter, DelimiterBehavior behavior, bool wordClasses = false) : TextPreTokenizer
{
    public override void Split(NormalizedText piece, bool firstPiece, List<NormalizedText> words)
    {
        if (wordClasses)
        {
            // Whitespace: runs of word characters and runs of other non-space characters; spaces dropped.
            var runs = new List<(int, int)>();
            int i = 0;
            while (i < piece.Length)
            {
                Rune r = Rune.GetRuneAt(piece.Text, i);
                if (Rune.IsWhiteSpace(r)) { i += r.Utf16SequenceLength; continue; }
                bool word = IsWordCharacter(r);
                int start = i;
                while (i < piece.Length)
                {
                    Rune s = Rune.GetRuneAt(piece.Text, i);
                    if (Rune.IsWhiteSpace(s) || IsWordCharacter(s) != word) break;
                    i += s.Utf16SequenceLength;
                }
                runs.Add((start, i));
            }
            Splitter.Split(piece, runs, DelimiterBehavior.Removed, true, words);
            return;
        }
        var delimiters = new List<(int, int)>();
        for (int i = 0; i < piece.Length;)
        {
            Rune r = Rune.GetRuneAt(piece.Text, i);
            if (isDelimiter(r)) delimiters.Add((i, i + r.Utf16SequenceLength));
            i += r.Utf16SequenceLength;
        }
        Splitter.Split(piece, delimiters, behavior, false, words);
    }

    /// <summary>Rust's regex <c>\w</c>: letters, marks, digits, connector punctuation, and Join_Control.</summary>
    internal static bool IsWordCharacter(Rune r) => r.Value is 0x200C or 0x200D || Rune.GetUnicodeCategory(r) is
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter
        or UnicodeCategory.OtherLetter or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
        or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber or UnicodeCategory.ConnectorPunctuation;

    /// <summary>Hugging Face's punctuation: ASCII punctuation and symbols, or any Unicode P* character.</summary>
    internal static bool IsPunctuation(Rune r) => (r.Value is > ' ' and < 127 && !char.IsAsciiLetterOrDigit((char)r.Value)) || Rune.GetUnicodeCategory(r) is
        UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation
        or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
}

/// <summary><c>BertPreTokenizer</c>: whitespace removed, then each punctuation character a word of its own.</summary>
internal sealed class BertJsonPreTokenizer : TextPreTokenizer
{
    private static readonly CharacterClassPreTokenizer Whitespace = new(Rune.IsWhiteSpace, DelimiterBehavior.Removed);
    private static readonly CharacterClassPreTokenizer Punctuation = new(CharacterClassPreTokenizer.IsPunctuation, DelimiterBehavior.Isolated);

    public override void Split(NormalizedText piece, bool firstPiece, List<NormalizedText> words)
    {
        var spaced = new List<NormalizedText>();
        Whitespace.Split(piece, firstPiece, spaced);
        foreach (NormalizedText word in spaced) Punctuation.Split(word, firstPiece, words);
    }
}

/// <summary><c>Sequence</c>: each pre-tokenizer splits every word the previous one gave.</summary>
internal sealed class SequencePreTokenizer(IReadOnlyList<TextPreTokenizer> steps) : TextPreTokenizer
{
    public override void Split(NormalizedText piece, bool firstPiece, List<NormalizedText> words)
    {
        var current = new List<NormalizedText> { piece };
        foreach (TextPreTokenizer step in steps)
        {
            var next = new List<NormalizedText>(current.Count * 2);
            foreach (NormalizedText word in current) step.Split(word, firstPiece, next);
            current = next;
        }
        words.AddRange(current);
    }
}

/// <summary>GPT-2's byte-to-character table: printable bytes stand for themselves, the others for characters from U+0100 on.</summary>
internal static class ByteAlphabet
{
    public static readonly char[] CharOfByte = BuildTable();
    public static readonly Dictionary<char, byte> ByteOfChar = CharOfByte.Select((c, b) => (c, b)).ToDictionary(p => p.c, p => (byte)p.b);

    private static char[] BuildTable()
    {
        var table = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is (>= '!' and <= '~') or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF);
            table[b] = printable ? (char)b : (char)(256 + next++);
        }
        return table;
    }

    /// <summary>The piece's UTF-8 bytes as stand-in characters, each taking the origin of the character it encodes.</summary>
    public static NormalizedText Encode(NormalizedText piece)
    {
        NormalizedText.Builder builder = piece.Rebuild();
        Span<byte> bytes = stackalloc byte[4];
        for (int i = 0; i < piece.Length;)
        {
            Rune r = Rune.GetRuneAt(piece.Text, i);
            int n = r.EncodeToUtf8(bytes);
            int next = i + r.Utf16SequenceLength;
            for (int k = 0; k < n; k++) builder.Append(CharOfByte[bytes[k]], i, next);
            i = next;
        }
        return builder.Build();
    }
}
