using System.Text;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>A tokenizer.json decoder: turns the tokens' strings back into text pieces (Hugging Face's <c>decode_chain</c>); the pieces are then joined.</summary>
internal abstract class TokenDecoder
{
    public abstract List<string> Decode(List<string> tokens);
}

/// <summary><c>ByteLevel</c>: the stand-in characters of all tokens back to bytes, read as UTF-8 (invalid sequences become U+FFFD); a token with a character outside the table contributes its own UTF-8.</summary>
internal sealed class ByteLevelDecoder : TokenDecoder
{
    public override List<string> Decode(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string token in tokens)
        {
            int mark = bytes.Count;
            bool mapped = true;
            foreach (char c in token)
            {
                if (!ByteAlphabet.ByteOfChar.TryGetValue(c, out byte b))
                {
                    mapped = false;
                    break;
                }
                bytes.Add(b);
            }
            if (!mapped)
            {
                bytes.RemoveRange(mark, bytes.Count - mark);
                bytes.AddRange(Encoding.UTF8.GetBytes(token));
            }
        }
        return [Encoding.UTF8.GetString([.. bytes])];
    }
}

/// <summary><c>ByteFallback</c>: runs of <c>&lt;0xNN&gt;</c> tokens become the text of their bytes, or one U+FFFD per byte when the run is not valid UTF-8.</summary>
internal sealed class ByteFallbackDecoder : TokenDecoder
{
    private static readonly UTF8Encoding Strict = new(false, true);

    public override List<string> Decode(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var run = new List<byte>();
        void Flush()
        {
            if (run.Count == 0) return;
            try
            {
                result.Add(Strict.GetString([.. run]));
            }
            catch (DecoderFallbackException)
            {
                for (int k = 0; k < run.Count; k++) result.Add("\uFFFD");
            }
            run.Clear();
        }
        foreach (string token in tokens)
        {
            if (ByteFallbackToken.TryParse(token, out byte b))
            {
                run.Add(b);
                continue;
            }
            Flush();
            result.Add(token);
        }
        Flush();
        return result;
    }
}

/// <summary><c>Fuse</c>: all tokens into one string.</summary>
internal sealed class FuseDecoder : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary><c>Replace</c>: in each token, every match of the pattern becomes the content.</summary>
internal sealed class ReplaceDecoder(TextPattern pattern, string content) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => tokens.Select(t => pattern.Replace(t, content)).ToList();
}

/// <summary><c>Strip</c>: up to <c>start</c> copies of the content character removed from the start of each token, up to <c>stop</c> from its end.</summary>
internal sealed class StripDecoder(char content, int start, int stop) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => tokens.Select(t =>
    {
        int from = 0, to = t.Length;
        while (from < Math.Min(start, t.Length) && t[from] == content) from++;
        for (int k = 0; k < stop && to > from && t[to - 1] == content; k++) to--;
        return t[from..to];
    }).ToList();
}

/// <summary><c>Metaspace</c>: the replacement character becomes a space; the first token loses its leading one unless the scheme is "never".</summary>
internal sealed class MetaspaceDecoder(char replacement, string prependScheme) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => tokens.Select((t, i) =>
    {
        string text = t.Replace(replacement, ' ');
        return i == 0 && prependScheme != "never" && text.StartsWith(' ') ? text[1..] : text;
    }).ToList();
}

/// <summary><c>WordPiece</c>: continuing tokens lose their prefix, the others get a space before them; with <c>cleanup</c>, spaces before punctuation and in English contractions are removed.</summary>
internal sealed class WordPieceDecoder(string prefix, bool cleanup) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => tokens.Select((t, i) =>
    {
        string text = i == 0 ? t : t.StartsWith(prefix, StringComparison.Ordinal) ? t[prefix.Length..] : " " + t;
        return cleanup ? Cleanup(text) : text;
    }).ToList();

    /// <summary>Hugging Face's <c>clean_up_tokenization</c>.</summary>
    internal static string Cleanup(string text) => text.Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
        .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");
}

/// <summary><c>BPEDecoder</c>: the end-of-word suffix becomes a space (nothing after the last token).</summary>
internal sealed class BpeSuffixDecoder(string suffix) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens) => tokens.Select((t, i) => t.Replace(suffix, i == tokens.Count - 1 ? "" : " ")).ToList();
}

/// <summary><c>Sequence</c>: each decoder's output is the next one's input.</summary>
internal sealed class SequenceDecoder(IReadOnlyList<TokenDecoder> steps) : TokenDecoder
{
    public override List<string> Decode(List<string> tokens)
    {
        foreach (TokenDecoder step in steps) tokens = step.Decode(tokens);
        return tokens;
    }
}
