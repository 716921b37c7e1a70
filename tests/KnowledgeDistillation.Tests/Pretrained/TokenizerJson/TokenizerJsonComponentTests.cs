using System.Text.Json.Nodes;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Pretrained.TokenizerJson;

namespace KnowledgeDistillation.Tests.Pretrained.TokenizerJson;

/// <summary>Components on small inputs whose results are worked out by hand from Hugging Face's documentation.</summary>
public sealed class TokenizerJsonComponentTests
{
    /// <summary>A BPE tokenizer.json over the given vocabulary and merges, with optional extra fields.</summary>
    internal static string Bpe(string[] vocabulary, string[] merges, JsonObject? model = null, JsonObject? root = null)
    {
        var vocab = new JsonObject();
        for (int i = 0; i < vocabulary.Length; i++) vocab[vocabulary[i]] = i;
        var modelNode = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()) };
        foreach ((string key, JsonNode? value) in model ?? []) modelNode[key] = value?.DeepClone();
        var rootNode = new JsonObject { ["version"] = "1.0", ["added_tokens"] = new JsonArray(), ["model"] = modelNode };
        foreach ((string key, JsonNode? value) in root ?? []) rootNode[key] = value?.DeepClone();
        return rootNode.ToJsonString();
    }

    [Theory]
    // Hugging Face's documentation of SplitDelimiterBehavior, on "the-final--countdown" split at "-".
    [InlineData("Removed", "the|final|countdown")]
    [InlineData("Isolated", "the|-|final|-|-|countdown")]
    [InlineData("MergedWithPrevious", "the-|final-|-|countdown")]
    [InlineData("MergedWithNext", "the|-final|-|-countdown")]
    [InlineData("Contiguous", "the|-|final|--|countdown")]
    public void Split_behaviours_cut_as_documented(string behavior, string expected)
    {
        var words = new List<NormalizedText>();
        new PatternSplitPreTokenizer(TextPattern.Literal("-"), Enum.Parse<DelimiterBehavior>(behavior), invert: false)
            .Split(NormalizedText.Original("the-final--countdown"), true, words);
        string.Join("|", words.Select(w => w.Text)).Should().Be(expected);
    }

    [Fact]
    public void Merges_apply_lowest_rank_first_and_leftmost_among_equals()
    {
        // Vocabulary a b c ab bc abc; merges ranked: "b c" (0), "a b" (1), "a bc" (2).
        // "abc": b+c merges first (rank 0) → a bc → abc (rank 2). "abab": a b twice at rank 1 → ab ab.
        HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.FromJson(Bpe(["a", "b", "c", "ab", "bc", "abc"], ["b c", "a b", "a bc"]));
        tokenizer.Encode("abc").Ids.Should().Equal(5);
        tokenizer.Encode("abab").Ids.Should().Equal(3, 3);
        // "aab": the only rank is a b at position 1 → a ab.
        tokenizer.Encode("aab").Ids.Should().Equal(0, 3);
        // Without "a bc", "abc" stops at a + bc.
        HuggingFaceTokenizer shorter = HuggingFaceTokenizer.FromJson(Bpe(["a", "b", "c", "ab", "bc"], ["b c", "a b"]));
        shorter.Encode("abc").Ids.Should().Equal(0, 4);
    }

    [Fact]
    public void Byte_fallback_unknown_fusion_and_ignore_merges_follow_the_model_flags()
    {
        string[] vocabulary = ["<unk>", "<0x41>", "<0xC3>", "<0xA9>", "a", "b", "ab", "abba"];
        // é (C3 A9) is not in the vocabulary: with byte_fallback it is its two byte tokens.
        HuggingFaceTokenizer bytes = HuggingFaceTokenizer.FromJson(Bpe(vocabulary, ["a b"], new JsonObject { ["unk_token"] = "<unk>", ["byte_fallback"] = true }));
        bytes.Encode("aé").Ids.Should().Equal(4, 2, 3);
        // Without it, é is <unk>; fuse_unk makes one <unk> of "éé", without it two.
        HuggingFaceTokenizer fused = HuggingFaceTokenizer.FromJson(Bpe(vocabulary, ["a b"], new JsonObject { ["unk_token"] = "<unk>", ["fuse_unk"] = true }));
        fused.Encode("ééa").Ids.Should().Equal(0, 4);
        HuggingFaceTokenizer unfused = HuggingFaceTokenizer.FromJson(Bpe(vocabulary, ["a b"], new JsonObject { ["unk_token"] = "<unk>" }));
        unfused.Encode("ééa").Ids.Should().Equal(0, 0, 4);
        // "abba": merges give ab + b + a; with ignore_merges the whole word is in the vocabulary and is one token.
        HuggingFaceTokenizer merged = HuggingFaceTokenizer.FromJson(Bpe(vocabulary, ["a b"]));
        merged.Encode("abba").Ids.Should().Equal(6, 5, 4);
        HuggingFaceTokenizer whole = HuggingFaceTokenizer.FromJson(Bpe(vocabulary, ["a b"], new JsonObject { ["ignore_merges"] = true }));
        whole.Encode("abba").Ids.Should().Equal(7);
        // Decoding byte tokens back: ByteFallback turns <0xC3><0xA9> into é, an invalid lone <0xC3> into U+FFFD.
        HuggingFaceTokenizer decoding = HuggingFaceTokenizer.FromJson(Bpe(vocabulary, ["a b"], new JsonObject { ["byte_fallback"] = true },
            new JsonObject { ["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = new JsonArray(new JsonObject { ["type"] = "ByteFallback" }, new JsonObject { ["type"] = "Fuse" }) } }));
        decoding.Decode([4, 2, 3], skipSpecialTokens: false).Should().Be("aé");
        decoding.Decode([4, 2, 4], skipSpecialTokens: false).Should().Be("a\uFFFDa");
    }

    [Fact]
    public void Unigram_takes_the_split_of_highest_total_score_and_fuses_unknown_characters()
    {
        // The example of the Rust library's documentation (models/unigram/model.rs): pieces and scores as there,
        // "abcdacdxx" → abcd (10) + a (0) + cd (1), and the two unknown x's are one unknown token.
        const string json = """{"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", 0.0], ["b", 0.0], ["c", 0.0], ["d", 0.0], ["cd", 1.0], ["ab", 2.0], ["abc", 5.0], ["abcd", 10.0]]}}""";
        HuggingFaceEncoding encoding = HuggingFaceTokenizer.FromJson(json).Encode("abcdacdxx");
        encoding.Ids.Should().Equal(8, 1, 5, 0);
        encoding.Offsets[^1].Should().Be(new Range(7, 9));
        // Without an unk_id a character no piece covers cannot be tokenized.
        ((Action)(() => HuggingFaceTokenizer.FromJson(json.Replace("\"unk_id\": 0, ", "")).Encode("ax"))).Should().Throw<InvalidOperationException>().WithMessage("*no unk_id*\"x\"*");
    }

    [Fact]
    public void Byte_level_text_is_GPT2s_printable_byte_alphabet()
    {
        // GPT-2's table: space (0x20) is Ġ (U+0120), newline Ċ (U+010A), printable ASCII itself, é's bytes C3 A9 are Ã ©.
        ByteAlphabet.CharOfByte[' '].Should().Be('\u0120');
        ByteAlphabet.CharOfByte['\n'].Should().Be('\u010A');
        ByteAlphabet.CharOfByte['A'].Should().Be('A');
        ByteAlphabet.Encode(NormalizedText.Original(" é")).Text.Should().Be("\u0120\u00C3\u00A9");
        ByteAlphabet.CharOfByte.Distinct().Should().HaveCount(256);
    }

    [Fact]
    public void Added_tokens_match_leftmost_longest_and_strip_and_single_word_as_flagged()
    {
        var added = new[]
        {
            new AddedToken(10, "<a>", false, false, false, false, true),
            new AddedToken(11, "<a><b>", false, false, false, false, true),
            new AddedToken(12, "cat", true, false, false, false, false),
            new AddedToken(13, "[M]", false, true, true, false, true),
        };
        var matcher = new AddedTokenMatcher(added);
        string Parts(string text) => string.Join("|", matcher.Split(text).Select(p => p.Token is null ? text[p.Start..p.End] : $"#{p.Token.Id}"));
        Parts("x<a><b>y<a>").Should().Be("x|#11|y|#10");
        // single_word: "cat" inside "concatenate" is not the token; standing alone it is.
        Parts("concatenate cat.").Should().Be("concatenate |#12|.");
        // lstrip/rstrip: the spaces around [M] belong to it.
        Parts("a  [M]  b").Should().Be("a|#13|b");
    }

    [Fact]
    public void Normalisers_keep_each_characters_origin()
    {
        // NFC of "e" + combining acute is one "é", which came from both original characters.
        NormalizedText nfc = new UnicodeFormNormalizer(System.Text.NormalizationForm.FormC).Apply(NormalizedText.Original("xe\u0301y"));
        nfc.Text.Should().Be("xéy");
        nfc.OriginalRange(1, 2).Should().Be(new Range(1, 3));
        nfc.OriginalRange(2, 3).Should().Be(new Range(3, 4));
        // Prepend ▁ and replace spaces (Mistral's normaliser): "a b" → "▁a▁b".
        NormalizedText mistral = new SequenceNormalizer([new PrependNormalizer("\u2581"), new ReplaceNormalizer(TextPattern.Literal(" "), "\u2581")]).Apply(NormalizedText.Original("a b"));
        mistral.Text.Should().Be("\u2581a\u2581b");
        mistral.OriginalRange(2, 3).Should().Be(new Range(1, 2));
        // A regular expression over astral letters: \p{L}+ takes 𝐀𝐁 (two letters outside the BMP) as one run, as Oniguruma does.
        TextPattern.Expression(@"\p{L}+").Matches("1𝐀𝐁2").Should().Equal((1, 5));
    }
}
