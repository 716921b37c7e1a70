using System.Text;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>
/// A piece of text as the tokenizer.json pipeline sees it, with the range of the original text that each of its
/// characters came from: normalisers and pre-tokenizers change the text, and a token's offsets still name the
/// characters the user wrote.
/// </summary>
internal sealed class NormalizedText
{
    private readonly int[] _start;
    private readonly int[] _end;

    public NormalizedText(string text, int[] start, int[] end)
    {
        Text = text;
        _start = start;
        _end = end;
    }

    /// <summary>The text as written, each character its own origin, shifted by <paramref name="offset"/>.</summary>
    public static NormalizedText Original(string text, int offset = 0)
    {
        var start = new int[text.Length];
        var end = new int[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            start[i] = offset + i;
            end[i] = offset + i + 1;
        }
        return new NormalizedText(text, start, end);
    }

    public string Text { get; }

    public int Length => Text.Length;

    /// <summary>The original range of characters <paramref name="from"/> to <paramref name="to"/> (exclusive); an empty span maps to an empty range.</summary>
    public Range OriginalRange(int from, int to) => to > from ? new Range(_start[from], _end[to - 1]) : new Range(_start.Length > 0 && from < _start.Length ? _start[from] : 0, _start.Length > 0 && from < _start.Length ? _start[from] : 0);

    public NormalizedText Slice(int from, int to) => new(Text[from..to], _start[from..to], _end[from..to]);

    /// <summary>A text built piece by piece: each appended string takes the original range of a span of this text.</summary>
    public Builder Rebuild() => new(this);

    /// <summary>Applies a text-to-text function whose effect is local (Unicode normal forms, case mapping): each chunk of a base
    /// character and the marks after it is mapped alone, so that offsets stay exact; where the chunks' results do not add up to
    /// the whole text's, every character maps to the whole range.</summary>
    public NormalizedText MapChunks(Func<string, string> map)
    {
        string whole = map(Text);
        if (whole == Text) return this;
        Builder builder = Rebuild();
        int from = 0;
        for (int i = 0; i < Text.Length;)
        {
            Rune r = Rune.GetRuneAt(Text, i);
            int next = i + r.Utf16SequenceLength;
            if (next >= Text.Length || StartsChunk(Rune.GetRuneAt(Text, next)))
            {
                builder.Append(map(Text[from..next]), from, next);
                from = next;
            }
            i = next;
        }
        NormalizedText chunked = builder.Build();
        if (chunked.Text == whole) return chunked;
        var start = new int[whole.Length];
        var end = new int[whole.Length];
        Array.Fill(start, _start.Length > 0 ? _start[0] : 0);
        Array.Fill(end, _end.Length > 0 ? _end[^1] : 0);
        return new NormalizedText(whole, start, end);
    }

    /// <summary>A character that normal forms never join to the one before: not a mark and not a medial or final Hangul jamo.</summary>
    private static bool StartsChunk(Rune r) =>
        Rune.GetUnicodeCategory(r) is not (System.Globalization.UnicodeCategory.NonSpacingMark or System.Globalization.UnicodeCategory.SpacingCombiningMark
            or System.Globalization.UnicodeCategory.EnclosingMark)
        && r.Value is not ((>= 0x1160 and <= 0x11FF) or (>= 0xD7B0 and <= 0xD7FF));

    internal sealed class Builder(NormalizedText source)
    {
        private readonly StringBuilder _text = new(source.Length + 4);
        private readonly List<int> _start = new(source.Length + 4);
        private readonly List<int> _end = new(source.Length + 4);

        /// <summary>Appends <paramref name="text"/>, which replaces characters <paramref name="from"/> to <paramref name="to"/> of the source (an empty span: an insertion there).</summary>
        public Builder Append(string text, int from, int to)
        {
            Range origin = source.OriginalRange(from, to);
            int start = origin.Start.Value, end = origin.End.Value;
            if (to == from && source.Length > 0)
            {
                // An insertion takes the range of the character it stands before (or after, at the end).
                int at = Math.Min(from, source.Length - 1);
                (start, end) = (source._start[at], source._end[at]);
            }
            _text.Append(text);
            for (int i = 0; i < text.Length; i++)
            {
                _start.Add(start);
                _end.Add(end);
            }
            return this;
        }

        /// <summary>Appends one character standing for characters <paramref name="from"/> to <paramref name="to"/> of the source (no string per character).</summary>
        public Builder Append(char c, int from, int to)
        {
            _text.Append(c);
            _start.Add(source._start[from]);
            _end.Add(source._end[to - 1]);
            return this;
        }

        /// <summary>Appends characters <paramref name="from"/> to <paramref name="to"/> of the source unchanged.</summary>
        public Builder Keep(int from, int to)
        {
            _text.Append(source.Text, from, to - from);
            for (int i = from; i < to; i++)
            {
                _start.Add(source._start[i]);
                _end.Add(source._end[i]);
            }
            return this;
        }

        public NormalizedText Build() => new(_text.ToString(), [.. _start], [.. _end]);
    }
}
