using KnowledgeDistillation.Pretrained;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>
/// Damaged tokenizer files are refused with the file's name and the line, key or field at fault — never with a
/// message of the tokenizer package that names neither, a NullReferenceException, or a silently wrong id.
/// </summary>
public class TokenizerFileDamageTests
{
    private static string SentencePieceModel => Path.Combine(BuildFacts.RepositoryRoot, "tests", "KnowledgeDistillation.Tests", "Fixtures", "Tokenizers", "sentencepiece", "tokenizer.model");

    /// <summary>A tiny byte-level BPE folder: a, b and their merge ab.</summary>
    private static TemporaryFolder Bpe(string vocab = "{\"a\": 0, \"b\": 1, \"ab\": 2}", string merges = "#version: 0.2\na b\n", string? config = null)
    {
        var folder = new TemporaryFolder();
        File.WriteAllText(folder.PathOf("vocab.json"), vocab);
        File.WriteAllText(folder.PathOf("merges.txt"), merges);
        if (config is not null) File.WriteAllText(folder.PathOf("tokenizer_config.json"), config);
        return folder;
    }

    private static TemporaryFolder WordPiece(string vocab, string? config = null)
    {
        var folder = new TemporaryFolder();
        File.WriteAllText(folder.PathOf("vocab.txt"), vocab);
        if (config is not null) File.WriteAllText(folder.PathOf("tokenizer_config.json"), config);
        return folder;
    }

    private static TemporaryFolder SentencePiece(byte[] model, string? config = null)
    {
        var folder = new TemporaryFolder();
        File.WriteAllBytes(folder.PathOf("tokenizer.model"), model);
        if (config is not null) File.WriteAllText(folder.PathOf("tokenizer_config.json"), config);
        return folder;
    }

    private static void Refused(TemporaryFolder folder, string file, string message)
    {
        using (folder)
        {
            FluentActions.Invoking(() => PretrainedTokenizer.Load(folder.Path)).Should().Throw<InvalidDataException>().WithMessage($"{folder.PathOf(file)}{message}");
        }
    }

    [Fact]
    public void A_damaged_vocab_json_names_the_file_and_the_token()
    {
        Refused(Bpe(vocab: "{\"a\": 0, \"b\": 1, \"ab\""), "vocab.json", " is not valid JSON*");
        Refused(Bpe(vocab: "[\"a\", \"b\"]"), "vocab.json", " must hold a JSON object; it holds an array.");
        Refused(Bpe(vocab: "{\"a\": 0, \"b\": \"1\", \"ab\": 2}"), "vocab.json", ": the id of \"b\" must be an integer from 0 to 2147483646; got \"1\".");
        Refused(Bpe(vocab: "{\"a\": 0, \"b\": -1, \"ab\": 2}"), "vocab.json", ": the id of \"b\" must be an integer from 0 to 2147483646; got -1.");
        Refused(Bpe(vocab: "{\"a\": 0, \"b\": 0.5, \"ab\": 2}"), "vocab.json", ": the id of \"b\" must be an integer*got 0.5.");
        Refused(Bpe(vocab: "{\"a\": 0, \"b\": 0, \"ab\": 2}"), "vocab.json", ": \"b\" and \"a\" both have id 0; each id must name one token.");
        Refused(Bpe(vocab: "{}"), "vocab.json", " holds no tokens.");
    }

    [Fact]
    public void A_bad_merges_line_names_the_file_and_the_line()
    {
        Refused(Bpe(merges: "#version: 0.2\na b\na b ab\n"), "merges.txt", ", line 3: a merge is two tokens separated by one space; got \"a b ab\".");
        Refused(Bpe(merges: "a  b\n"), "merges.txt", ", line 1: a merge is two tokens separated by one space*");
        Refused(Bpe(merges: "#version: 0.2\na c\n"), "merges.txt", ", line 2: \"c\" is not in vocab.json.");
        Refused(Bpe(merges: "#version: 0.2\nb a\n"), "merges.txt", ", line 2: \"ba\" is not in vocab.json.");
    }

    [Fact]
    public void A_vocab_txt_without_the_special_tokens_is_refused_naming_them()
    {
        Refused(WordPiece("[PAD]\n[CLS]\n[SEP]\n[MASK]\nhello\n"), "vocab.txt", " lacks [UNK], which a WordPiece (BERT) vocabulary must hold.");
        using TemporaryFolder good = WordPiece("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n");
        PretrainedTokenizer.Load(good.Path).VocabularySize.Should().Be(6, "the final newline ends the last token; it is no token itself");
    }

    [Fact]
    public void An_empty_or_damaged_sentencepiece_model_names_the_file()
    {
        Refused(SentencePiece([]), "tokenizer.model", " is empty; a SentencePiece model (a serialised ModelProto) was expected.");
        byte[] model = File.ReadAllBytes(SentencePieceModel);
        Refused(SentencePiece(model[..(model.Length / 3)]), "tokenizer.model", " could not be read as a SentencePiece model: *");
        Refused(SentencePiece([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01, 0x02]), "tokenizer.model", " could not be read as a SentencePiece model: *");
    }

    [Fact]
    public void A_flag_of_the_wrong_type_names_its_file_and_field()
    {
        Refused(WordPiece("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", "{\"do_lower_case\": \"yes\"}"), "tokenizer_config.json", ": \"do_lower_case\" must be true or false; got \"yes\".");
        Refused(SentencePiece(File.ReadAllBytes(SentencePieceModel), "{\"add_bos_token\": \"true\"}"), "tokenizer_config.json", ": \"add_bos_token\" must be true or false; got \"true\".");
        Refused(Bpe(config: "{\"add_prefix_space\": 1}"), "tokenizer_config.json", ": \"add_prefix_space\" must be true or false; got 1.");
        Refused(Bpe(config: "{\"tokenizer_class\": 7}"), "tokenizer_config.json", ": \"tokenizer_class\" must be a string; got 7.");
        Refused(Bpe(config: "{\"tokenizer_class\": \"GPT2Tokenizer\", \"tokenizer_class\": \"X\"}"), "tokenizer_config.json", " gives \"tokenizer_class\" twice*");
    }

    [Fact]
    public void A_well_formed_tiny_folder_still_loads_and_encodes()
    {
        using TemporaryFolder folder = Bpe();
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(folder.Path);
        tokenizer.Encode("ab", addSpecialTokens: false).Should().Equal(2);
    }
}
