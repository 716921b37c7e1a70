using System.Security.Cryptography;
using System.Text.Json;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>
/// The real encoders' vocabulary through Microsoft.ML.Tokenizers against Hugging Face's own tokenizers library, and what
/// happens at the edges a user meets first: an empty text, a text longer than the model's positions, a vocabulary that
/// belongs to another model.
/// </summary>
public class RealTokenizerTests(RealTextEncoders encoders) : IClassFixture<RealTextEncoders>
{
    private sealed record Reference(string Text, int[] Ids);

    private static (string VocabSha256, Reference[] Texts) Fixture()
    {
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "wordpiece-ids.json")));
        Reference[] texts = [.. json.RootElement.GetProperty("texts").EnumerateArray()
            .Select(t => new Reference(t.GetProperty("text").GetString()!, [.. t.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32())]))];
        return (json.RootElement.GetProperty("vocab_sha256").GetString()!, texts);
    }

    [Theory]
    [InlineData("MiniLM")]
    [InlineData("ArcticXs")]
    public void WordPiece_ids_equal_Hugging_Face_tokenizers_on_accents_CJK_URLs_control_characters_and_overlong_words(string name)
    {
        // Recorded by tests/pretrained-reference/generate_wordpiece_fixtures.mjs from the Rust tokenizers library over
        // the same vocab.txt; both packages ship that vocabulary (the hash says so, and fails if a package changes it).
        (string sha, Reference[] texts) = Fixture();
        string folder = encoders.Folder(name);
        Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(folder, "vocab.txt")))).Should().Be(sha);
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(folder);
        tokenizer.VocabularySize.Should().Be(30522);
        texts.Should().HaveCountGreaterThan(15);
        string[] wrong = [.. texts.Where(r => !tokenizer.Encode(r.Text).SequenceEqual(r.Ids))
            .Select(r => $"{JsonSerializer.Serialize(r.Text)}: expected [{string.Join(' ', r.Ids)}], got [{string.Join(' ', tokenizer.Encode(r.Text))}]")];
        wrong.Should().BeEmpty();
    }

    [Fact]
    public void An_empty_text_is_CLS_SEP_as_in_Hugging_Face_and_the_teacher_embeds_it()
    {
        (_, Reference[] texts) = Fixture();
        texts.Single(t => t.Text.Length == 0).Ids.Should().Equal(101, 102);
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(encoders.MiniLM);
        tokenizer.Encode("").Should().Equal(101, 102);

        using var teacher = new OnnxTeacher(Path.Combine(encoders.MiniLM, "model.onnx"), new OnnxTeacherOptions { LogitsOutput = "last_hidden_state", Pooling = SequencePooling.Mean, Normalize = true });
        using var scope = NewDisposeScope();
        using ModelOutput output = teacher.Run(new TokenBatch(tensor(new long[] { 101, 102 }, [1, 2]), ones(1, 2, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly);
        output.Logits.isfinite().all().item<bool>().Should().BeTrue();
        output.Logits.norm().item<float>().Should().BeApproximately(1f, 1e-5f);
    }

    [Fact]
    public void A_text_longer_than_the_positions_is_cut_to_them_keeping_SEP_and_the_imported_model_refuses_an_uncut_batch()
    {
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(encoders.MiniLM);
        string text = string.Join(' ', Enumerable.Repeat("distillation keeps most of the teacher", 200));
        IReadOnlyList<int> full = tokenizer.Encode(text);
        full.Count.Should().BeGreaterThan(512);

        // Documented behaviour: Encode(text, maxLength) keeps [CLS], the first maxLength − 2 word pieces, and [SEP].
        IReadOnlyList<int> cut = tokenizer.Encode(text, maxLength: 512);
        cut.Should().HaveCount(512);
        cut.Take(511).Should().Equal(full.Take(511));
        cut[^1].Should().Be(102);

        OnnxImportedModel<BertModel> imported = OnnxImport.Bert(Path.Combine(encoders.MiniLM, "model.onnx"));
        using BertModel model = imported.Model;
        using var scope = NewDisposeScope();
        Tensor ids = tensor(full.Take(513).Select(i => (long)i).ToArray(), [1, 513]);
        Action act = () => model.call(ids);
        act.Should().Throw<ArgumentException>().WithMessage("*sequence length 513*ContextLength allows 1 to 512*");
        model.call(tensor(cut.Select(i => (long)i).ToArray(), [1, 512])).shape.Should().Equal(1, 512, 384);

        // The ONNX file fed directly: ONNX Runtime's own failure, explained; or, with MaxSequenceLength, refused before it runs.
        var tooLong = new TokenBatch(ids, ones(1, 513, dtype: ScalarType.Int64));
        string onnxFile = Path.Combine(encoders.MiniLM, "model.onnx");
        using (var unchecked_ = new OnnxTeacher(onnxFile, new OnnxTeacherOptions { LogitsOutput = "last_hidden_state" }))
        {
            Action onnx = () => unchecked_.Run(tooLong, OutputRequest.LogitsOnly).Dispose();
            onnx.Should().Throw<ArgumentException>().WithParameterName("batch").WithMessage("*[1, 513] tokens*longer than the model's positions*MaxSequenceLength*");
        }
        using var teacher = new OnnxTeacher(onnxFile, new OnnxTeacherOptions { LogitsOutput = "last_hidden_state", MaxSequenceLength = 512 });
        Action refused = () => teacher.Run(tooLong, OutputRequest.LogitsOnly).Dispose();
        refused.Should().Throw<ArgumentException>().WithParameterName("batch").WithMessage("*sequence length 513*at most MaxSequenceLength = 512*");
        using ModelOutput fits = teacher.Run(new TokenBatch(tensor(cut.Select(i => (long)i).ToArray(), [1, 512]), ones(1, 512, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly);
        fits.Logits.shape.Should().Equal(1, 512, 384);
    }

    [Fact]
    public void The_vocabulary_beside_the_graph_is_checked_against_the_word_embedding()
    {
        OnnxImportedModel<BertModel> imported = OnnxImport.Bert(Path.Combine(encoders.MiniLM, "model.onnx"));
        imported.Model.Dispose();
        imported.Report.Notes.Should().Contain(n => n.Contains("30522 entries, one per word embedding row", StringComparison.Ordinal));
    }

    [Fact]
    public void A_vocabulary_larger_than_the_word_embedding_is_refused_and_a_smaller_one_is_reported()
    {
        string[] vocab = File.ReadAllLines(Path.Combine(encoders.MiniLM, "vocab.txt"));
        string model = Path.Combine(encoders.MiniLM, "model.onnx");
        string folder = Path.Combine(Path.GetTempPath(), $"kd-vocab-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            // A cased-model-like vocabulary with 10 more entries than the uncased model's embedding has rows.
            File.WriteAllLines(Path.Combine(folder, "vocab.txt"), [.. vocab, .. Enumerable.Range(0, 10).Select(i => $"extra{i}")]);
            Action act = () => OnnxImport.Bert(model, new OnnxBertImportOptions { TokenizerFolder = folder });
            act.Should().Throw<InvalidDataException>().WithMessage("*30532 entries*word embedding has 30522 rows*");
            File.ReadAllLines(Path.Combine(folder, "vocab.txt")).Should().HaveCount(30532, "the user's files are left as they were");

            File.WriteAllLines(Path.Combine(folder, "vocab.txt"), vocab.Take(28996));
            OnnxImportedModel<BertModel> imported = OnnxImport.Bert(model, new OnnxBertImportOptions { TokenizerFolder = folder });
            imported.Model.Dispose();
            imported.Report.Notes.Should().Contain(n => n.Contains("28996 entries and the word embedding 30522 rows", StringComparison.Ordinal));

            Action missing = () => OnnxImport.Bert(model, new OnnxBertImportOptions { TokenizerFolder = Path.Combine(folder, "absent") });
            missing.Should().Throw<ArgumentException>().WithParameterName("options").WithMessage("*TokenizerFolder*absent*");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
