using System.Collections.Concurrent;
using System.Text;
using KnowledgeDistillation.Pretrained;

namespace KnowledgeDistillation.Tests.Pretrained.TokenizerJson;

/// <summary>
/// Seven real tokenizer.json files against the Rust library's own output on the committed corpus (3,055 texts of
/// translations in 40 languages, news, code and hostile lines): every id and both decodings must be equal.
/// </summary>
public sealed class RealTokenizerJsonTests
{
    private static readonly ConcurrentDictionary<string, Lazy<HuggingFaceTokenizer>> Loaded = new();

    internal static HuggingFaceTokenizer Tokenizer(string name) =>
        Loaded.GetOrAdd(name, n => new Lazy<HuggingFaceTokenizer>(() => HuggingFaceTokenizer.Load(RealTokenizerFiles.TokenizerJson(n)))).Value;

    public static TheoryData<string> Names => [.. RealTokenizerFiles.Names];

    [Theory]
    [MemberData(nameof(Names))]
    public void Ids_and_decoded_text_equal_the_Rust_library_on_every_corpus_text(string name)
    {
        HuggingFaceTokenizer tokenizer = Tokenizer(name);
        string[] texts = ReferenceCases.Texts;
        ReferenceCases.Case[] expected = ReferenceCases.Expected(name);
        expected.Should().HaveCount(texts.Length);
        var failures = new StringBuilder();
        int mismatches = 0;
        for (int i = 0; i < texts.Length; i++)
        {
            int[] ids = [.. tokenizer.Encode(texts[i]).Ids];
            string decoded = tokenizer.Decode(expected[i].Ids, skipSpecialTokens: true);
            string withSpecials = tokenizer.Decode(expected[i].Ids, skipSpecialTokens: false);
            if (ids.SequenceEqual(expected[i].Ids) && decoded == expected[i].Decoded && withSpecials == expected[i].DecodedWithSpecials) continue;
            if (++mismatches <= 5)
            {
                failures.AppendLine($"text {i} {System.Text.Json.JsonSerializer.Serialize(texts[i])}: ids [{string.Join(",", ids)}] expected [{string.Join(",", expected[i].Ids)}]; " +
                    $"decoded {System.Text.Json.JsonSerializer.Serialize(decoded)} expected {System.Text.Json.JsonSerializer.Serialize(expected[i].Decoded)}; " +
                    $"with specials {System.Text.Json.JsonSerializer.Serialize(withSpecials)} expected {System.Text.Json.JsonSerializer.Serialize(expected[i].DecodedWithSpecials)}");
            }
        }
        mismatches.Should().Be(0, $"{name} must tokenize as the Rust library does; first mismatches:\n{failures}");
        expected.Sum(c => c.Ids.Length).Should().BeGreaterThan(60_000, "the corpus is large enough to exercise the vocabulary");
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Offsets_point_into_the_text_in_order_and_cover_what_each_token_encodes(string name)
    {
        HuggingFaceTokenizer tokenizer = Tokenizer(name);
        foreach (string text in ReferenceCases.Texts.Take(400))
        {
            HuggingFaceEncoding encoding = tokenizer.Encode(text, addSpecialTokens: false);
            int previousStart = 0;
            for (int k = 0; k < encoding.Ids.Count; k++)
            {
                (int start, int end) = (encoding.Offsets[k].Start.Value, encoding.Offsets[k].End.Value);
                start.Should().BeGreaterThanOrEqualTo(previousStart, $"token {k} of {name} on \"{text}\" starts no earlier than the one before");
                end.Should().BeLessThanOrEqualTo(text.Length).And.BeGreaterThanOrEqualTo(start);
                previousStart = start;
            }
        }
        // For a byte-level tokenizer with no normaliser, a token that holds whole characters decodes to exactly the characters its offsets name.
        if (name is "gpt2" or "llama3" or "deepseek_v3")
        {
            const string text = "Grüße, 世界!  x = 42;\tdone 🙂";
            HuggingFaceEncoding encoding = tokenizer.Encode(text, addSpecialTokens: false);
            int checkedTokens = 0;
            for (int k = 0; k < encoding.Ids.Count; k++)
            {
                string piece = tokenizer.Decode([encoding.Ids[k]], skipSpecialTokens: false);
                if (piece.Contains('\uFFFD')) continue; // part of a multi-byte character
                text[encoding.Offsets[k]].Should().Be(piece, $"token {k} ({encoding.Tokens[k]}) of {name}");
                checkedTokens++;
            }
            checkedTokens.Should().BeGreaterThan(5);
        }
    }

    [Fact]
    public void A_folder_with_tokenizer_json_loads_through_PretrainedTokenizer_with_its_special_tokens()
    {
        // Llama 3's file: the configuration names <|begin_of_text|> and <|end_of_text|>; its post-processor adds none.
        PretrainedTokenizer llama3 = PretrainedTokenizer.Load(RealTokenizerFiles.Folder("llama3"));
        llama3.Format.Should().Contain("tokenizer.json");
        llama3.Special.Bos.Should().Be(128000);
        llama3.Special.Eos.Should().Be(128001);
        llama3.VocabularySize.Should().Be(128256);
        // Mistral's (the llama2 package): <s> before every text, from its TemplateProcessing.
        PretrainedTokenizer mistral = PretrainedTokenizer.Load(RealTokenizerFiles.Folder("llama2"));
        mistral.Prefix.Should().Equal(1);
        mistral.Special.Unk.Should().Be(0);
        mistral.Special.Eos.Should().Be(2);
        string[] texts = ReferenceCases.Texts;
        ReferenceCases.Case[] expected = ReferenceCases.Expected("llama2");
        for (int i = 0; i < 300; i++) mistral.Encode(texts[i]).Should().Equal(expected[i].Ids, $"text {i}");
        mistral.Encode(texts[0], addSpecialTokens: false).Should().Equal(expected[0].Ids.Skip(1));
    }

    [Fact]
    public void The_vocab_txt_reader_gives_the_same_ids_as_the_Rust_library_on_the_corpus()
    {
        // The BERT tokenizer.json's vocabulary written back as vocab.txt (one token per line, in id order): the
        // Microsoft.ML.Tokenizers WordPiece path with the library's BERT normaliser must agree with the Rust library too.
        HuggingFaceTokenizer bert = Tokenizer("bert");
        using var folder = new TemporaryFolder();
        string[] lines = Enumerable.Range(0, bert.VocabularySize).Select(id => bert.IdToToken(id)!).ToArray();
        File.WriteAllLines(Path.Combine(folder.Path, "vocab.txt"), lines);
        PretrainedTokenizer fromVocab = PretrainedTokenizer.Load(folder.Path);
        fromVocab.Format.Should().Contain("vocab.txt");
        string[] texts = ReferenceCases.Texts;
        ReferenceCases.Case[] expected = ReferenceCases.Expected("bert");
        var wrong = Enumerable.Range(0, texts.Length).Where(i => !fromVocab.Encode(texts[i]).SequenceEqual(expected[i].Ids)).ToList();
        wrong.Should().BeEmpty($"texts {string.Join(", ", wrong.Take(5).Select(i => System.Text.Json.JsonSerializer.Serialize(texts[i])))} differ");
    }

    [Fact]
    public void The_Microsoft_ML_Tokenizers_surface_gives_the_same_ids()
    {
        HuggingFaceTokenizer qwen = Tokenizer("qwen3");
        Microsoft.ML.Tokenizers.Tokenizer asBase = qwen;
        string text = ReferenceCases.Texts[7];
        asBase.EncodeToIds(text).Should().Equal(qwen.Encode(text).Ids);
        asBase.Decode(qwen.Encode(text).Ids).Should().Be(qwen.Decode(qwen.Encode(text).Ids, skipSpecialTokens: false));
        asBase.EncodeToIds(text, maxTokenCount: 3, out _, out int consumed).Should().Equal(qwen.Encode(text).Ids.Take(3));
        consumed.Should().BeGreaterThan(0).And.BeLessThan(text.Length);
    }
}
