using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>
/// Hugging Face's <c>BertPreTokenizer</c>: words are split at whitespace, and every punctuation character, ASCII
/// punctuation (which includes <c>$ + &lt; = &gt; ^ ` | ~</c>) or a Unicode P* category, is a word of its own.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers splits with <c>\w+|\p{P}</c>, which drops every symbol that is not Unicode punctuation
/// (<c>$</c>, <c>€</c>, <c>©</c>, emoji: Hugging Face keeps them, most are in BERT's vocabulary) and keeps <c>_</c> inside
/// words (Hugging Face splits at it).
/// </remarks>
internal sealed class BertPunctuationSplitter : PreTokenizer
{
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => PreTokenize(text.ToString());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text)
    {
        var pieces = new List<(int, int)>();
        int start = -1;
        for (int i = 0; i < text.Length;)
        {
            Rune r = Rune.GetRuneAt(text, i);
            if (Rune.IsWhiteSpace(r) || IsPunctuation(r))
            {
                if (start >= 0) pieces.Add((start, i - start));
                start = -1;
                if (!Rune.IsWhiteSpace(r)) pieces.Add((i, r.Utf16SequenceLength));
            }
            else if (start < 0)
            {
                start = i;
            }
            i += r.Utf16SequenceLength;
        }
        if (start >= 0) pieces.Add((start, text.Length - start));
        return pieces;
    }

    /// <summary>ASCII punctuation (every printable ASCII character that is not a letter or a digit) or Unicode punctuation.</summary>
    private static bool IsPunctuation(Rune r) => CharacterClassPreTokenizer.IsPunctuation(r);
}
