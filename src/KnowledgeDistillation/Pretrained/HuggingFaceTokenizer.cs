using System.Buffers;
using System.Text;
using KnowledgeDistillation.Formats;
using KnowledgeDistillation.Pretrained.TokenizerJson;
using Microsoft.ML.Tokenizers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>The result of <see cref="HuggingFaceTokenizer.Encode"/>: ids, their token strings, and the range of the input each covers.</summary>
/// <param name="Ids">The token ids, with the post-processor's special tokens when they were asked for.</param>
/// <param name="Tokens">Each id's token string (an added token's content, or the vocabulary entry).</param>
/// <param name="Offsets">The characters of the input each token came from (a special token the post-processor adds covers none).</param>
/// <param name="IsSpecial">Whether each token is a special token (added as special, or put there by the post-processor).</param>
public sealed record HuggingFaceEncoding(IReadOnlyList<int> Ids, IReadOnlyList<string> Tokens, IReadOnlyList<Range> Offsets, IReadOnlyList<bool> IsSpecial);

/// <summary>
/// A tokenizer read from a Hugging Face <c>tokenizer.json</c> (the tokenizers library's file, the only tokenizer file
/// of most 2025-2026 models: Llama 3, Qwen2/3, Gemma 3, DeepSeek, Mistral): its added tokens, normaliser,
/// pre-tokenizer, model (BPE, byte-level or SentencePiece-style with byte fallback, and WordPiece), post-processor
/// and decoder, each reproducing the Rust library's behaviour. Ids and decoded text equal the Rust library's on
/// thousands of lines of real text for six released tokenizers (docs/tokenizers.md lists them).
/// </summary>
/// <remarks>
/// <para>It is a <c>Microsoft.ML.Tokenizers</c> <see cref="Tokenizer"/>: <c>EncodeToIds</c> gives the ids with the
/// post-processor's special tokens (Hugging Face's <c>encode</c> default), <c>Decode</c> keeps special tokens (its
/// <c>decode</c> default). <see cref="Encode"/> and <see cref="Decode(IEnumerable{int}, bool)"/> take both choices.</para>
/// <para>Text that is not valid UTF-16 (a lone surrogate) is tokenized with U+FFFD in place of each lone surrogate, as the
/// Rust library sees such text after conversion to UTF-8. Truncation and padding fields of the file are not applied:
/// <see cref="TextBatcher"/> does both.</para>
/// </remarks>
public sealed class HuggingFaceTokenizer : Tokenizer
{
    private readonly TokenizerJsonParts _parts;
    private readonly AddedTokenMatcher _rawTokens;
    private readonly AddedTokenMatcher _normalizedTokens;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly HashSet<int> _special;

    private HuggingFaceTokenizer(TokenizerJsonParts parts, string source)
    {
        _parts = parts;
        Source = source;
        _rawTokens = new AddedTokenMatcher(parts.AddedTokens.Where(t => !t.Normalized));
        _normalizedTokens = new AddedTokenMatcher(parts.AddedTokens.Where(t => t.Normalized));
        _addedById = new Dictionary<int, AddedToken>();
        _addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        foreach (AddedToken token in parts.AddedTokens)
        {
            _addedById[token.Id] = token;
            _addedByContent[token.Content] = token;
        }
        _special = parts.AddedTokens.Where(t => t.Special).Select(t => t.Id).Concat(parts.Prefix).Concat(parts.Suffix).ToHashSet();
        VocabularySize = Math.Max(parts.Model.TokenOfId.Keys.DefaultIfEmpty(-1).Max(), parts.AddedTokens.Select(t => t.Id).DefaultIfEmpty(-1).Max()) + 1;
    }

    /// <summary>Reads a tokenizer.json file.</summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is damaged: not JSON, a field of the wrong type, a merge or special token naming a token the vocabulary lacks (the message names the place).</exception>
    /// <exception cref="NotSupportedException">The file names a component this reader does not implement (the message names it and what is supported).</exception>
    public static HuggingFaceTokenizer Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new HuggingFaceTokenizer(TokenizerJsonReader.Read(JsonFile.ReadBounded(path), path), path);
    }

    /// <summary>Reads tokenizer.json text (for a file held in memory or an embedded resource).</summary>
    /// <exception cref="InvalidDataException">As for <see cref="Load"/>.</exception>
    /// <exception cref="NotSupportedException">As for <see cref="Load"/>.</exception>
    public static HuggingFaceTokenizer FromJson(string json, string sourceName = "tokenizer.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        return new HuggingFaceTokenizer(TokenizerJsonReader.Read(Encoding.UTF8.GetBytes(json), sourceName), sourceName);
    }

    /// <summary>Where the tokenizer was read from.</summary>
    public string Source { get; }

    /// <summary>The model type the file declares: "BPE", "WordPiece" or "Unigram".</summary>
    public string ModelType => _parts.ModelType;

    /// <summary>Number of ids the tokenizer can produce (largest id of the vocabulary and the added tokens, + 1).</summary>
    public int VocabularySize { get; }

    /// <summary>The special tokens the post-processor puts before one text (Llama's &lt;s&gt;, BERT's [CLS]).</summary>
    public IReadOnlyList<int> Prefix => _parts.Prefix;

    /// <summary>The special tokens the post-processor puts after one text (BERT's [SEP]).</summary>
    public IReadOnlyList<int> Suffix => _parts.Suffix;

    /// <summary>The id of a token (an added token's content or a vocabulary entry), or null.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out AddedToken? added)) return added.Id;
        return _parts.Model.Vocabulary.TryGetValue(token, out int id) ? id : null;
    }

    /// <summary>The token string of an id, or null when the tokenizer has no such id.</summary>
    public string? IdToToken(int id) => _addedById.TryGetValue(id, out AddedToken? added) ? added.Content : _parts.Model.TokenOfId.GetValueOrDefault(id);

    /// <summary>Whether <paramref name="id"/> is an added token marked special (what <see cref="Decode(IEnumerable{int}, bool)"/> skips).</summary>
    public bool IsAddedSpecial(int id) => _addedById.TryGetValue(id, out AddedToken? token) && token.Special;

    /// <summary>Whether the vocabulary is written in GPT-2's byte-to-character alphabet (a ByteLevel pre-tokenizer or decoder).</summary>
    public bool UsesByteLevelAlphabet => _parts.ByteLevel;

    /// <summary>
    /// The UTF-8 bytes each id stands for, for cross-tokenizer alignment: byte-level tokens (Ġ, Ċ …) mapped back through
    /// GPT-2's table, <c>&lt;0xNN&gt;</c> byte-fallback tokens as their byte, SentencePiece's ▁ as a space, WordPiece's
    /// <c>##</c> dropped; special added tokens stand for none.
    /// </summary>
    public CrossTokenizer.TokenByteStrings TokenBytes()
    {
        var bytes = new byte[]?[VocabularySize];
        for (int id = 0; id < bytes.Length; id++)
        {
            if (IdToToken(id) is not { } token || IsAddedSpecial(id)) continue;
            bytes[id] = BytesOf(token);
        }
        return CrossTokenizer.TokenByteStrings.FromBytes(bytes, Source);
    }

    private byte[] BytesOf(string token)
    {
        if (_parts.ByteLevel && token.All(c => ByteAlphabet.ByteOfChar.ContainsKey(c))) return token.Select(c => ByteAlphabet.ByteOfChar[c]).ToArray();
        if (ByteFallbackToken.TryParse(token, out byte b)) return [b];
        if (ModelType == "WordPiece" && token.StartsWith("##", StringComparison.Ordinal) && token.Length > 2) token = token[2..];
        return Encoding.UTF8.GetBytes(token.Replace('\u2581', ' '));
    }

    /// <summary>Whether <paramref name="id"/> is a special token (skipped by <see cref="Decode(IEnumerable{int}, bool)"/> when asked).</summary>
    public bool IsSpecial(int id) => _special.Contains(id);

    /// <summary>Tokenizes <paramref name="text"/> as the Rust library's <c>encode(text, add_special_tokens)</c> does.</summary>
    public HuggingFaceEncoding Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var ids = new List<int>();
        var tokens = new List<string>();
        var offsets = new List<Range>();
        var special = new List<bool>();
        void AddSpecial(int id)
        {
            ids.Add(id);
            tokens.Add(IdToToken(id) ?? "");
            offsets.Add(new Range(0, 0));
            special.Add(true);
        }
        if (addSpecialTokens) foreach (int id in _parts.Prefix) AddSpecial(id);
        var words = new List<NormalizedText>();
        foreach ((AddedToken? token, int start, int end) in _rawTokens.Split(text))
        {
            if (token is not null)
            {
                Add(token, new Range(start, end));
                continue;
            }
            NormalizedText piece = NormalizedText.Original(text[start..end], start);
            if (_parts.Normalizer is not null) piece = _parts.Normalizer.Apply(piece);
            foreach ((AddedToken? inner, int from, int to) in _normalizedTokens.IsEmpty ? [(null, 0, piece.Length)] : _normalizedTokens.Split(piece.Text))
            {
                if (inner is not null)
                {
                    Add(inner, piece.OriginalRange(from, to));
                    continue;
                }
                NormalizedText part = from == 0 && to == piece.Length ? piece : piece.Slice(from, to);
                words.Clear();
                if (_parts.PreTokenizer is null)
                {
                    if (part.Length > 0) words.Add(part);
                }
                else
                {
                    _parts.PreTokenizer.Split(part, firstPiece: part.Length > 0 && part.OriginalRange(0, 1).Start.Value == 0, words);
                }
                foreach (NormalizedText word in words)
                {
                    foreach ((int id, int s, int e) in _parts.Model.Tokenize(word.Text))
                    {
                        ids.Add(id);
                        tokens.Add(_parts.Model.TokenOfId[id]);
                        offsets.Add(word.OriginalRange(s, e));
                        special.Add(false);
                    }
                }
            }
        }
        if (addSpecialTokens) foreach (int id in _parts.Suffix) AddSpecial(id);
        return new HuggingFaceEncoding(ids, tokens, offsets, special);

        void Add(AddedToken token, Range range)
        {
            ids.Add(token.Id);
            tokens.Add(token.Content);
            offsets.Add(range);
            special.Add(token.Special);
        }
    }

    /// <summary>The text of <paramref name="ids"/> through the file's decoder, as the Rust library's <c>decode(ids, skip_special_tokens)</c>; ids the tokenizer does not have are skipped, as there.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            if (IdToToken(id) is not { } token) continue;
            if (skipSpecialTokens && _addedById.TryGetValue(id, out AddedToken? added) && added.Special) continue;
            tokens.Add(token);
        }
        return _parts.Decoder is null ? string.Join(' ', tokens) : string.Concat(_parts.Decoder.Decode(tokens));
    }

    /// <inheritdoc/>
    public override string Decode(IEnumerable<int> ids) => Decode(ids, skipSpecialTokens: false);

    /// <inheritdoc/>
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        ArgumentNullException.ThrowIfNull(ids);
        int[] all = ids.ToArray();
        string text = Decode(all, skipSpecialTokens: false);
        if (text.Length <= destination.Length)
        {
            text.AsSpan().CopyTo(destination);
            (idsConsumed, charsWritten) = (all.Length, text.Length);
            return OperationStatus.Done;
        }
        // The longest prefix of ids whose text fits.
        int fit = 0;
        string fitted = "";
        for (int n = 1; n <= all.Length; n++)
        {
            string candidate = Decode(all.Take(n), skipSpecialTokens: false);
            if (candidate.Length > destination.Length) break;
            (fit, fitted) = (n, candidate);
        }
        fitted.AsSpan().CopyTo(destination);
        (idsConsumed, charsWritten) = (fit, fitted.Length);
        return OperationStatus.DestinationTooSmall;
    }

    /// <inheritdoc/>
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        HuggingFaceEncoding encoding = Encode(text ?? textSpan.ToString());
        int count = Math.Min(encoding.Ids.Count, settings.MaxTokenCount);
        var tokens = new List<EncodedToken>(count);
        for (int i = 0; i < count; i++) tokens.Add(new EncodedToken(encoding.Ids[i], encoding.Tokens[i], encoding.Offsets[i]));
        int consumed = count == encoding.Ids.Count ? (text?.Length ?? textSpan.Length) : tokens.Select(t => t.Offset.End.Value).DefaultIfEmpty(0).Max();
        return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = null, CharsConsumed = consumed };
    }

    /// <summary>Lone surrogates become U+FFFD: what the Rust library receives for such text once it is converted to UTF-8.</summary>
    private static string ReplaceLoneSurrogates(string text)
    {
        int i = 0;
        for (; i < text.Length; i++)
        {
            if (char.IsSurrogate(text[i]) && !(char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))) break;
            if (char.IsHighSurrogate(text[i])) i++;
        }
        if (i >= text.Length) return text;
        var fixedText = new StringBuilder(text.Length);
        for (int k = 0; k < text.Length; k++)
        {
            char c = text[k];
            if (char.IsHighSurrogate(c) && k + 1 < text.Length && char.IsLowSurrogate(text[k + 1]))
            {
                fixedText.Append(c).Append(text[++k]);
            }
            else
            {
                fixedText.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
            }
        }
        return fixedText.ToString();
    }
}
