using System.Text.Json.Nodes;
using KnowledgeDistillation.Pretrained;
using static KnowledgeDistillation.Tests.Pretrained.TokenizerJson.TokenizerJsonComponentTests;

namespace KnowledgeDistillation.Tests.Pretrained.TokenizerJson;

/// <summary>Damaged or unsupported tokenizer.json files are refused with the place and the problem; odd text is tokenized, not crashed on.</summary>
public sealed class TokenizerJsonBadInputTests
{
    private static readonly string[] Vocabulary = ["a", "b", "ab"];

    [Theory]
    [InlineData("WordLevel", "*model.type \"WordLevel\" is not supported*BPE*WordPiece*Unigram*")]
    [InlineData("Quantum", "*model.type \"Quantum\" is not a tokenizer model this reader knows*")]
    public void An_unknown_or_unsupported_model_is_named(string type, string message)
    {
        string json = Bpe(Vocabulary, ["a b"]).Replace("\"type\":\"BPE\"", $"\"type\":\"{type}\"");
        ((Action)(() => HuggingFaceTokenizer.FromJson(json, "my/tokenizer.json"))).Should().Throw<NotSupportedException>().WithMessage("my/tokenizer.json: " + message);
    }

    [Fact]
    public void An_unknown_component_is_named_with_its_place_in_the_file()
    {
        var normalizer = new JsonObject { ["normalizer"] = new JsonObject { ["type"] = "Precompiled", ["precompiled_charsmap"] = "AAAA" } };
        ((Action)(() => HuggingFaceTokenizer.FromJson(Bpe(Vocabulary, ["a b"], root: normalizer)))).Should().Throw<NotSupportedException>()
            .WithMessage("*normalizer.type \"Precompiled\" is not supported; supported here: NFC*");
        var nested = new JsonObject
        {
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(new JsonObject { ["type"] = "Whitespace" }, new JsonObject { ["type"] = "UnicodeScripts" }),
            },
        };
        ((Action)(() => HuggingFaceTokenizer.FromJson(Bpe(Vocabulary, ["a b"], root: nested)))).Should().Throw<NotSupportedException>()
            .WithMessage("*pre_tokenizer.pretokenizers[1].type \"UnicodeScripts\" is not supported*");
        var decoder = new JsonObject { ["decoder"] = new JsonObject { ["type"] = "CTC" } };
        ((Action)(() => HuggingFaceTokenizer.FromJson(Bpe(Vocabulary, ["a b"], root: decoder)))).Should().Throw<NotSupportedException>().WithMessage("*decoder.type \"CTC\"*");
        ((Action)(() => HuggingFaceTokenizer.FromJson(Bpe(Vocabulary, ["a b"], model: new JsonObject { ["dropout"] = 0.1 })))).Should().Throw<NotSupportedException>()
            .WithMessage("*model.dropout 0.1 is not supported*");
    }

    [Fact]
    public void A_merge_naming_a_token_the_vocabulary_lacks_is_refused_with_its_index()
    {
        ((Action)(() => HuggingFaceTokenizer.FromJson(Bpe(Vocabulary, ["a b", "b z"])))).Should().Throw<InvalidDataException>()
            .WithMessage("*model.merges[1] names \"z\", which is not in model.vocab*");
        // The merged token itself must exist too: "b a" makes "ba".
        ((Action)(() => HuggingFaceTokenizer.FromJson(Bpe(Vocabulary, ["b a"])))).Should().Throw<InvalidDataException>()
            .WithMessage("*model.merges[0] names \"ba\"*");
        ((Action)(() => HuggingFaceTokenizer.FromJson(Bpe(Vocabulary, ["a b c"])))).Should().Throw<InvalidDataException>()
            .WithMessage("*model.merges[0] must be two tokens separated by one space; it is \"a b c\"*");
        ((Action)(() => HuggingFaceTokenizer.FromJson(Bpe(Vocabulary, ["a b"], new JsonObject { ["unk_token"] = "<unk>" })))).Should().Throw<InvalidDataException>()
            .WithMessage("*model.unk_token names \"<unk>\", which is not in model.vocab*");
    }

    [Theory]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", "*is not valid JSON*")]
    [InlineData("[1, 2]", "*(root) must be a JSON object*")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "*model.vocab[\"a\"] must be an integer from 0*; it is -1*")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", "*model.vocab gives id 0 to both \"a\" and \"b\"*")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}", "*model.merges[0] must be \"left right\" or*")]
    [InlineData("{\"model\": {\"type\": \"Unigram\", \"vocab\": {\"a\": 0}}}", "*model.vocab must be an array of [piece, score]*")]
    [InlineData("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 3, \"vocab\": [[\"a\", -1.0]]}}", "*model.unk_id is 3, but the vocabulary has 1 pieces*")]
    [InlineData("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", \"x\"]]}}", "*model.vocab[0] must be [piece, score]*")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": \"x\", \"content\": \"<s>\"}]}", "*added_tokens[0].id must be an integer*")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"(\"}, \"content\": \"\"}}", "*normalizer.pattern.Regex \"(\" is not a regular expression*")]
    public void A_damaged_file_is_refused_with_the_place_and_what_was_found(string json, string message)
    {
        ((Action)(() => HuggingFaceTokenizer.FromJson(json, "t.json"))).Should().Throw<InvalidDataException>().WithMessage(message);
    }

    [Fact]
    public void A_damaged_file_on_disk_is_named_and_left_as_it_was()
    {
        using var folder = new TemporaryFolder();
        string path = Path.Combine(folder.Path, "tokenizer.json");
        byte[] damaged = System.Text.Encoding.UTF8.GetBytes(Bpe(Vocabulary, ["a b"])[..40]);
        File.WriteAllBytes(path, damaged);
        ((Action)(() => HuggingFaceTokenizer.Load(path))).Should().Throw<InvalidDataException>().WithMessage($"{path} is not valid JSON*");
        ((Action)(() => PretrainedTokenizer.Load(folder.Path))).Should().Throw<InvalidDataException>().WithMessage($"{path} is not valid JSON*");
        File.ReadAllBytes(path).Should().Equal(damaged);
        ((Action)(() => HuggingFaceTokenizer.Load(Path.Combine(folder.Path, "missing.json")))).Should().Throw<FileNotFoundException>();
    }

    [Fact]
    public void Lone_surrogates_are_tokenized_as_the_replacement_character()
    {
        // Documented: a lone surrogate becomes U+FFFD, which is what the Rust library receives after UTF-8 conversion
        // (the committed corpus holds such texts, and their ids equal the Rust library's).
        HuggingFaceTokenizer tokenizer = RealTokenizerJsonTests.Tokenizer("gpt2");
        foreach (string text in new[] { "a\ud800b", "end \ud83d", "\udc00\ud800 x" })
        {
            tokenizer.Encode(text).Ids.Should().Equal(tokenizer.Encode(text.Replace('\ud800', '\uFFFD').Replace('\udc00', '\uFFFD').Replace('\ud83d', '\uFFFD')).Ids);
        }
        ((Action)(() => tokenizer.Encode(null!))).Should().Throw<ArgumentNullException>().WithParameterName("text");
    }
}
