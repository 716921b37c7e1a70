using System.Text;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>One entry of tokenizer.json's <c>added_tokens</c>.</summary>
internal sealed record AddedToken(int Id, string Content, bool SingleWord, bool LeftStrip, bool RightStrip, bool Normalized, bool Special);

/// <summary>
/// Finds added tokens in a text as the Rust library does: leftmost match, longest where several start together;
/// <c>single_word</c> tokens only between non-word characters; <c>lstrip</c>/<c>rstrip</c> take the whitespace
/// beside them into the token.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Node _root = new();
    private readonly HashSet<char> _firsts = [];

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        foreach (AddedToken token in tokens)
        {
            if (token.Content.Length == 0) continue;
            Node node = _root;
            foreach (char c in token.Content)
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(c, out Node? child)) node.Children[c] = child = new Node();
                node = child;
            }
            node.Token = token;
            _firsts.Add(token.Content[0]);
        }
    }

    public bool IsEmpty => _firsts.Count == 0;

    /// <summary>The text cut into parts, each either plain text (Token null) or one added token, with its character range.</summary>
    public List<(AddedToken? Token, int Start, int End)> Split(string text)
    {
        var parts = new List<(AddedToken?, int, int)>();
        int done = 0;
        for (int at = 0; at < text.Length;)
        {
            if (!_firsts.Contains(text[at]) || Longest(text, at) is not { } match)
            {
                at++;
                continue;
            }
            (AddedToken token, int end) = match;
            int start = at;
            if (token.SingleWord && !((start == 0 || !IsWordChar(text, start, before: true)) && (end == text.Length || !IsWordChar(text, end, before: false))))
            {
                at++;
                continue;
            }
            if (token.LeftStrip)
            {
                int s = start;
                while (s > done && char.IsWhiteSpace(text[s - 1])) s--;
                start = s;
            }
            if (token.RightStrip)
            {
                while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            }
            if (start > done) parts.Add((null, done, start));
            parts.Add((token, start, end));
            done = end;
            at = end;
        }
        if (done < text.Length || text.Length == 0) parts.Add((null, done, text.Length));
        return parts;
    }

    private (AddedToken, int)? Longest(string text, int at)
    {
        Node node = _root;
        (AddedToken, int)? best = null;
        for (int i = at; i < text.Length; i++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[i], out Node? child)) break;
            node = child;
            if (node.Token is not null) best = (node.Token, i + 1);
        }
        return best;
    }

    /// <summary>Whether the character just before (or at) <paramref name="at"/> is a word character.</summary>
    private static bool IsWordChar(string text, int at, bool before)
    {
        Rune r;
        if (before)
        {
            if (!Rune.TryGetRuneAt(text, char.IsLowSurrogate(text[at - 1]) && at >= 2 ? at - 2 : at - 1, out r)) return false;
        }
        else if (!Rune.TryGetRuneAt(text, at, out r))
        {
            return false;
        }
        return CharacterClassPreTokenizer.IsWordCharacter(r);
    }

    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public AddedToken? Token;
    }
}
