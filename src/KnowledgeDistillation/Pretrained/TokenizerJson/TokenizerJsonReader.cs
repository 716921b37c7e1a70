using System.Text;
using System.Text.Json;

namespace KnowledgeDistillation.Pretrained.TokenizerJson;

/// <summary>The parts a tokenizer.json declares, read and checked.</summary>
internal sealed record TokenizerJsonParts(
    TokenModel Model, string ModelType, TextNormalizer? Normalizer, TextPreTokenizer? PreTokenizer, TokenDecoder? Decoder,
    IReadOnlyList<AddedToken> AddedTokens, int[] Prefix, int[] Suffix)
{
    /// <summary>Whether tokens are written in GPT-2's byte alphabet: a ByteLevel pre-tokenizer or decoder anywhere.</summary>
    public bool ByteLevel { get; init; }
}

/// <summary>
/// Reads a Hugging Face tokenizer.json (the tokenizers library's serialisation) as untrusted input: every component the
/// file names is either built exactly or refused with a <see cref="NotSupportedException"/> naming it and its place in the
/// file; a damaged file (bad JSON, a wrong type, a merge or special token naming a token the vocabulary lacks) is an
/// <see cref="InvalidDataException"/> naming the place and what was found.
/// </summary>
internal sealed class TokenizerJsonReader
{
    private readonly string _source;

    /// <summary>Set when a ByteLevel pre-tokenizer or decoder is read: the vocabulary is then written in GPT-2's byte alphabet.</summary>
    private bool _byteLevel;

    private TokenizerJsonReader(string source) => _source = source;

    public static TokenizerJsonParts Read(ReadOnlyMemory<byte> json, string source)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source} is not valid JSON: {e.Message}", e);
        }
        using (document)
        {
            var reader = new TokenizerJsonReader(source);
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw reader.Invalid("(root)", $"must be a JSON object; it is {root.ValueKind}");
            return reader.ReadRoot(root);
        }
    }

    private TokenizerJsonParts ReadRoot(JsonElement root)
    {
        if (!root.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.Object) throw Invalid("model", "must be an object (the file has no tokenizer model)");
        IReadOnlyList<AddedToken> added = ReadAddedTokens(root);
        (TokenModel tokenModel, string type) = ReadModel(model);
        (int[] prefix, int[] suffix) = Optional(root, "post_processor") is { } post ? ReadPostProcessor(post, "post_processor") : ([], []);
        return new TokenizerJsonParts(
            tokenModel, type,
            Optional(root, "normalizer") is { } n ? ReadNormalizer(n, "normalizer") : null,
            Optional(root, "pre_tokenizer") is { } p ? ReadPreTokenizer(p, "pre_tokenizer") : null,
            Optional(root, "decoder") is { } d ? ReadDecoder(d, "decoder") : null,
            added, prefix, suffix) { ByteLevel = _byteLevel };
    }

    private IReadOnlyList<AddedToken> ReadAddedTokens(JsonElement root)
    {
        if (Optional(root, "added_tokens") is not { } list) return [];
        if (list.ValueKind != JsonValueKind.Array) throw Invalid("added_tokens", $"must be an array; it is {list.ValueKind}");
        var tokens = new List<AddedToken>();
        int index = 0;
        foreach (JsonElement item in list.EnumerateArray())
        {
            string where = $"added_tokens[{index++}]";
            string content = String(item, "content", where);
            if (content.Length == 0) throw Invalid(where + ".content", "must not be empty");
            tokens.Add(new AddedToken(Id(item, "id", where), content, Flag(item, "single_word", where, false), Flag(item, "lstrip", where, false),
                Flag(item, "rstrip", where, false), Flag(item, "normalized", where, true), Flag(item, "special", where, false)));
        }
        return tokens;
    }

    private (TokenModel, string) ReadModel(JsonElement model)
    {
        string type = Optional(model, "type") is { } t ? Text(t, "model.type") : model.TryGetProperty("merges", out _) ? "BPE" : model.TryGetProperty("max_input_chars_per_word", out _) ? "WordPiece" : "";
        switch (type)
        {
            case "BPE":
            {
                Dictionary<string, int> vocabulary = ReadVocabulary(model, "model.vocab");
                if (Optional(model, "dropout") is { ValueKind: JsonValueKind.Number } dropout && dropout.GetDouble() > 0)
                {
                    throw new NotSupportedException($"{_source}: model.dropout {dropout.GetDouble()} is not supported; BPE dropout samples different ids on every call (a training-time augmentation), and this reader gives the deterministic ids.");
                }
                string? prefix = OptionalString(model, "continuing_subword_prefix", "model");
                string? suffix = OptionalString(model, "end_of_word_suffix", "model");
                string? unknown = OptionalString(model, "unk_token", "model");
                if (unknown is not null && !vocabulary.ContainsKey(unknown)) throw Invalid("model.unk_token", $"names \"{unknown}\", which is not in model.vocab");
                var merges = ReadMerges(model, vocabulary, string.IsNullOrEmpty(prefix) ? null : prefix);
                return (new BpeModel(vocabulary, merges, unknown, prefix, suffix, Flag(model, "fuse_unk", "model", false), Flag(model, "byte_fallback", "model", false),
                    Flag(model, "ignore_merges", "model", false)), type);
            }
            case "WordPiece":
            {
                Dictionary<string, int> vocabulary = ReadVocabulary(model, "model.vocab");
                string unknown = OptionalString(model, "unk_token", "model") ?? "[UNK]";
                if (!vocabulary.ContainsKey(unknown)) throw Invalid("model.unk_token", $"names \"{unknown}\", which is not in model.vocab");
                int max = Optional(model, "max_input_chars_per_word") is { } m ? Integer(m, "model.max_input_chars_per_word") : 100;
                return (new WordPieceModel(vocabulary, unknown, OptionalString(model, "continuing_subword_prefix", "model") ?? "##", max), type);
            }
            case "Unigram":
                return (ReadUnigram(model), type);
            case "WordLevel":
                throw new NotSupportedException($"{_source}: model.type \"{type}\" is not supported; supported models: BPE (byte-level and SentencePiece-style with byte_fallback), WordPiece and Unigram.");
            default:
                throw new NotSupportedException($"{_source}: model.type \"{type}\" is not a tokenizer model this reader knows; supported models: BPE, WordPiece and Unigram.");
        }
    }

    private UnigramModel ReadUnigram(JsonElement model)
    {
        if (!model.TryGetProperty("vocab", out JsonElement vocab) || vocab.ValueKind != JsonValueKind.Array) throw Invalid("model.vocab", "must be an array of [piece, score] (a Unigram model)");
        var pieces = new List<(string, double)>();
        int index = 0;
        foreach (JsonElement entry in vocab.EnumerateArray())
        {
            string where = $"model.vocab[{index++}]";
            if (entry.ValueKind != JsonValueKind.Array || entry.GetArrayLength() != 2 || entry[0].ValueKind != JsonValueKind.String || entry[1].ValueKind != JsonValueKind.Number)
            {
                throw Invalid(where, $"must be [piece, score]; it is {Shorten(entry.GetRawText())}");
            }
            double score = entry[1].GetDouble();
            if (!double.IsFinite(score)) throw Invalid(where, $"has score {score}; a score is a finite log-probability");
            pieces.Add((entry[0].GetString()!, score));
        }
        if (pieces.Count == 0) throw Invalid("model.vocab", "holds no pieces");
        int? unknown = Optional(model, "unk_id") is { } u ? Integer(u, "model.unk_id") : null;
        if (unknown >= pieces.Count) throw Invalid("model.unk_id", $"is {unknown}, but the vocabulary has {pieces.Count} pieces");
        return new UnigramModel(pieces, unknown, Flag(model, "byte_fallback", "model", false));
    }

    private Dictionary<string, int> ReadVocabulary(JsonElement model, string where)
    {
        if (!model.TryGetProperty("vocab", out JsonElement vocab) || vocab.ValueKind != JsonValueKind.Object) throw Invalid(where, "must be an object of token → id");
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        var owner = new Dictionary<int, string>();
        foreach (JsonProperty entry in vocab.EnumerateObject())
        {
            int id = Integer(entry.Value, $"{where}[\"{Shorten(entry.Name)}\"]");
            if (owner.TryGetValue(id, out string? other)) throw Invalid(where, $"gives id {id} to both \"{Shorten(other)}\" and \"{Shorten(entry.Name)}\"; each id must name one token");
            if (!vocabulary.TryAdd(entry.Name, id)) throw Invalid(where, $"names \"{Shorten(entry.Name)}\" twice");
            owner[id] = entry.Name;
        }
        if (vocabulary.Count == 0) throw Invalid(where, "holds no tokens");
        return vocabulary;
    }

    private Dictionary<long, (int Rank, int NewId)> ReadMerges(JsonElement model, Dictionary<string, int> vocabulary, string? prefix)
    {
        var merges = new Dictionary<long, (int, int)>(BpeModel.PairComparer.Instance);
        if (Optional(model, "merges") is not { } list) return merges;
        if (list.ValueKind != JsonValueKind.Array) throw Invalid("model.merges", $"must be an array; it is {list.ValueKind}");
        int rank = 0;
        foreach (JsonElement merge in list.EnumerateArray())
        {
            string where = $"model.merges[{rank}]";
            string left, right;
            if (merge.ValueKind == JsonValueKind.String)
            {
                string[] parts = merge.GetString()!.Split(' ');
                if (parts.Length != 2) throw Invalid(where, $"must be two tokens separated by one space; it is \"{Shorten(merge.GetString()!)}\"");
                (left, right) = (parts[0], parts[1]);
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2 && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                (left, right) = (merge[0].GetString()!, merge[1].GetString()!);
            }
            else
            {
                throw Invalid(where, $"must be \"left right\" or [\"left\", \"right\"]; it is {Shorten(merge.GetRawText())}");
            }
            string joined = left + (prefix is not null && right.StartsWith(prefix, StringComparison.Ordinal) ? right[prefix.Length..] : right);
            int Lookup(string token) => vocabulary.TryGetValue(token, out int id) ? id : throw Invalid(where, $"names \"{Shorten(token)}\", which is not in model.vocab");
            long pair = BpeModel.Pair(Lookup(left), Lookup(right));
            merges.TryAdd(pair, (rank, Lookup(joined)));
            rank++;
        }
        return merges;
    }

    private TextNormalizer ReadNormalizer(JsonElement node, string where)
    {
        string type = TypeOf(node, where);
        return type switch
        {
            "NFC" => new UnicodeFormNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeFormNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeFormNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeFormNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(Flag(node, "strip_left", where, true), Flag(node, "strip_right", where, true)),
            "StripAccents" => new StripAccentsNormalizer(),
            "Replace" => new ReplaceNormalizer(ReadPattern(node, where), String(node, "content", where)),
            "Prepend" => new PrependNormalizer(String(node, "prepend", where)),
            "BertNormalizer" => ReadBertNormalizer(node, where),
            "Sequence" => new SequenceNormalizer(Items(node, "normalizers", where).Select((n, i) => ReadNormalizer(n, $"{where}.normalizers[{i}]")).ToList()),
            _ => throw Unsupported(where, type, "NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, BertNormalizer, Sequence"),
        };
    }

    private TextNormalizer ReadBertNormalizer(JsonElement node, string where)
    {
        bool lowercase = Flag(node, "lowercase", where, true);
        // strip_accents null follows lowercase, as in Hugging Face's BertNormalizer.
        bool stripAccents = Optional(node, "strip_accents") is { } s ? Bool(s, where + ".strip_accents") : lowercase;
        bool cleanText = Flag(node, "clean_text", where, true);
        if (!cleanText) throw new NotSupportedException($"{_source}: {where} has clean_text false, which is not supported (every released BERT tokenizer cleans).");
        return new BertJsonNormalizer(cleanText, Flag(node, "handle_chinese_chars", where, true), stripAccents, lowercase);
    }

    private TextPreTokenizer ReadPreTokenizer(JsonElement node, string where)
    {
        string type = TypeOf(node, where);
        return type switch
        {
            "ByteLevel" => ByteLevelPart(new ByteLevelPreTokenizer(Flag(node, "add_prefix_space", where, true), Flag(node, "use_regex", where, true))),
            "Split" => new PatternSplitPreTokenizer(ReadPattern(node, where), ReadBehavior(node, where), Flag(node, "invert", where, false)),
            "Metaspace" => new MetaspacePreTokenizer(Character(node, "replacement", where), ReadPrependScheme(node, where), Flag(node, "split", where, true)),
            "Whitespace" => new CharacterClassPreTokenizer(_ => false, DelimiterBehavior.Removed, wordClasses: true),
            "WhitespaceSplit" => new CharacterClassPreTokenizer(System.Text.Rune.IsWhiteSpace, DelimiterBehavior.Removed),
            "BertPreTokenizer" => new BertJsonPreTokenizer(),
            "Punctuation" => new CharacterClassPreTokenizer(CharacterClassPreTokenizer.IsPunctuation, Optional(node, "behavior") is not null ? ReadBehavior(node, where) : DelimiterBehavior.Isolated),
            "Digits" => new CharacterClassPreTokenizer(r => System.Text.Rune.IsNumber(r), Flag(node, "individual_digits", where, false) ? DelimiterBehavior.Isolated : DelimiterBehavior.Contiguous),
            "CharDelimiterSplit" => new CharacterClassPreTokenizer(ChooseDelimiter(Character(node, "delimiter", where)), DelimiterBehavior.Removed),
            "Sequence" => new SequencePreTokenizer(Items(node, "pretokenizers", where).Select((n, i) => ReadPreTokenizer(n, $"{where}.pretokenizers[{i}]")).ToList()),
            _ => throw Unsupported(where, type, "ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit, BertPreTokenizer, Punctuation, Digits, CharDelimiterSplit, Sequence"),
        };
    }

    private T ByteLevelPart<T>(T part)
    {
        _byteLevel = true;
        return part;
    }

    private static Func<System.Text.Rune, bool> ChooseDelimiter(char delimiter) => r => r.Value == delimiter;

    private string ReadPrependScheme(JsonElement node, string where)
    {
        if (Optional(node, "prepend_scheme") is { } scheme)
        {
            string value = Text(scheme, where + ".prepend_scheme");
            return value is "always" or "first" or "never" ? value : throw Invalid(where + ".prepend_scheme", $"must be \"always\", \"first\" or \"never\"; it is \"{value}\"");
        }
        // Files written before prepend_scheme existed say add_prefix_space.
        return Flag(node, "add_prefix_space", where, true) ? "always" : "never";
    }

    private DelimiterBehavior ReadBehavior(JsonElement node, string where)
    {
        string value = String(node, "behavior", where);
        return Enum.TryParse(value, ignoreCase: false, out DelimiterBehavior behavior) && Enum.IsDefined(behavior)
            ? behavior
            : throw Invalid(where + ".behavior", $"must be Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous; it is \"{value}\"");
    }

    private TextPattern ReadPattern(JsonElement node, string where)
    {
        if (!node.TryGetProperty("pattern", out JsonElement pattern) || pattern.ValueKind != JsonValueKind.Object) throw Invalid(where + ".pattern", "must be {\"String\": …} or {\"Regex\": …}");
        if (pattern.TryGetProperty("String", out JsonElement literal)) return TextPattern.Literal(Text(literal, where + ".pattern.String"));
        if (pattern.TryGetProperty("Regex", out JsonElement regex))
        {
            string expression = Text(regex, where + ".pattern.Regex");
            try
            {
                return TextPattern.Expression(expression);
            }
            catch (ArgumentException e)
            {
                throw Invalid(where + ".pattern.Regex", $"\"{Shorten(expression)}\" is not a regular expression .NET can compile: {e.Message}");
            }
        }
        throw Invalid(where + ".pattern", "must be {\"String\": …} or {\"Regex\": …}");
    }

    private TokenDecoder ReadDecoder(JsonElement node, string where)
    {
        string type = TypeOf(node, where);
        return type switch
        {
            "ByteLevel" => ByteLevelPart(new ByteLevelDecoder()),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Replace" => new ReplaceDecoder(ReadPattern(node, where), String(node, "content", where)),
            "Strip" => new StripDecoder(Character(node, "content", where), Integer(Required(node, "start", where), where + ".start"), Integer(Required(node, "stop", where), where + ".stop")),
            "Metaspace" => new MetaspaceDecoder(Character(node, "replacement", where), ReadPrependScheme(node, where)),
            "WordPiece" => new WordPieceDecoder(OptionalString(node, "prefix", where) ?? "##", Flag(node, "cleanup", where, true)),
            "BPEDecoder" => new BpeSuffixDecoder(OptionalString(node, "suffix", where) ?? "</w>"),
            "Sequence" => new SequenceDecoder(Items(node, "decoders", where).Select((n, i) => ReadDecoder(n, $"{where}.decoders[{i}]")).ToList()),
            _ => throw Unsupported(where, type, "ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, WordPiece, BPEDecoder, Sequence"),
        };
    }

    /// <summary>The special tokens put before and after one sequence.</summary>
    private (int[] Prefix, int[] Suffix) ReadPostProcessor(JsonElement node, string where)
    {
        string type = TypeOf(node, where);
        switch (type)
        {
            case "ByteLevel":
                return ([], []);
            case "BertProcessing" or "RobertaProcessing":
            {
                int IdOf(string field)
                {
                    JsonElement pair = Required(node, field, where);
                    if (pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2) throw Invalid($"{where}.{field}", "must be [token, id]");
                    return Integer(pair[1], $"{where}.{field}[1]");
                }
                return ([IdOf("cls")], [IdOf("sep")]);
            }
            case "TemplateProcessing":
            {
                JsonElement special = Required(node, "special_tokens", where);
                var prefix = new List<int>();
                var suffix = new List<int>();
                bool seenSequence = false;
                int index = 0;
                foreach (JsonElement piece in Items(node, "single", where))
                {
                    string at = $"{where}.single[{index++}]";
                    if (piece.TryGetProperty("Sequence", out _))
                    {
                        seenSequence = true;
                        continue;
                    }
                    if (!piece.TryGetProperty("SpecialToken", out JsonElement token)) throw Invalid(at, "must be {\"Sequence\": …} or {\"SpecialToken\": …}");
                    string name = String(token, "id", at + ".SpecialToken");
                    if (special.ValueKind != JsonValueKind.Object || !special.TryGetProperty(name, out JsonElement entry)) throw Invalid(at, $"names special token \"{name}\", which {where}.special_tokens does not define");
                    var tokenIds = Items(entry, "ids", $"{where}.special_tokens[\"{name}\"]").Select((e, i) => Integer(e, $"{where}.special_tokens[\"{name}\"].ids[{i}]"));
                    (seenSequence ? suffix : prefix).AddRange(tokenIds);
                }
                return ([.. prefix], [.. suffix]);
            }
            case "Sequence":
            {
                var prefix = new List<int>();
                var suffix = new List<int>();
                int index = 0;
                foreach (JsonElement step in Items(node, "processors", where))
                {
                    (int[] p, int[] s) = ReadPostProcessor(step, $"{where}.processors[{index++}]");
                    prefix.InsertRange(0, p);
                    suffix.AddRange(s);
                }
                return ([.. prefix], [.. suffix]);
            }
            default:
                throw Unsupported(where, type, "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence");
        }
    }

    // ---- small readers that name the place of what they refuse ----

    private static JsonElement? Optional(JsonElement node, string name) =>
        node.ValueKind == JsonValueKind.Object && node.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null ? value : null;

    private JsonElement Required(JsonElement node, string name, string where) =>
        Optional(node, name) ?? throw Invalid($"{where}.{name}", "is missing");

    private string TypeOf(JsonElement node, string where)
    {
        if (node.ValueKind != JsonValueKind.Object) throw Invalid(where, $"must be an object; it is {node.ValueKind}");
        return String(node, "type", where);
    }

    private IEnumerable<JsonElement> Items(JsonElement node, string name, string where)
    {
        JsonElement list = Required(node, name, where);
        if (list.ValueKind != JsonValueKind.Array) throw Invalid($"{where}.{name}", $"must be an array; it is {list.ValueKind}");
        return list.EnumerateArray().ToList();
    }

    private string String(JsonElement node, string name, string where) => Text(Required(node, name, where), $"{where}.{name}");

    private string? OptionalString(JsonElement node, string name, string where) => Optional(node, name) is { } value ? Text(value, $"{where}.{name}") : null;

    private string Text(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Invalid(where, $"must be a string; it is {Shorten(value.GetRawText())}");

    private char Character(JsonElement node, string name, string where)
    {
        string text = String(node, name, where);
        return text.Length == 1 ? text[0] : throw Invalid($"{where}.{name}", $"must be one character; it is \"{Shorten(text)}\"");
    }

    private bool Flag(JsonElement node, string name, string where, bool fallback) => Optional(node, name) is { } value ? Bool(value, $"{where}.{name}") : fallback;

    private bool Bool(JsonElement value, string where) => value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Invalid(where, $"must be true or false; it is {Shorten(value.GetRawText())}"),
    };

    private int Id(JsonElement node, string name, string where) => Integer(Required(node, name, where), $"{where}.{name}");

    private int Integer(JsonElement value, string where) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out long n) && n is >= 0 and < int.MaxValue
            ? (int)n
            : throw Invalid(where, $"must be an integer from 0 to {int.MaxValue - 1}; it is {Shorten(value.GetRawText())}");

    private InvalidDataException Invalid(string where, string problem) => new($"{_source}: {where} {problem}.");

    private NotSupportedException Unsupported(string where, string type, string supported) =>
        new($"{_source}: {where}.type \"{type}\" is not supported; supported here: {supported}.");

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "…";
}
