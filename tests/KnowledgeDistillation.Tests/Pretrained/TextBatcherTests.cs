using KnowledgeDistillation.Models;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Training;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>Text to batches: shifting, padding, masks and −100 labels, and BERT's 80/10/10 masking.</summary>
public class TextBatcherTests
{
    private static readonly string[] Vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "e", "f", "g", "h"];

    private static PretrainedTokenizer WordPiece(TemporaryFolder folder)
    {
        File.WriteAllLines(Path.Combine(folder.Path, "vocab.txt"), Vocabulary);
        return PretrainedTokenizer.Load(folder.Path);
    }

    private static long[] Row(Tensor t, int b) => t[b].data<long>().ToArray();

    [Fact]
    public void Causal_batches_shift_labels_pad_on_the_right_and_ignore_padding()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        var batcher = new TextBatcher(WordPiece(folder), maxLength: 6);

        DistillationBatch<TokenBatch> batch = batcher.CausalLanguageModeling(["a b c", "d e f g h a b"]);

        // Row 0: [CLS] a b c [SEP] → 2 5 6 7 3, padded to the longest row (6 after truncation keeps [CLS] … [SEP]).
        Row(batch.Inputs.InputIds, 0).Should().Equal(2, 5, 6, 7, 3, 0);
        Row(batch.Inputs.InputIds, 1).Should().Equal(2, 8, 9, 10, 11, 3);
        Row(batch.Labels!, 0).Should().Equal(5, 6, 7, 3, -100, -100);
        Row(batch.Labels!, 1).Should().Equal(8, 9, 10, 11, 3, -100);
        batch.Inputs.AttentionMask![0].data<bool>().ToArray().Should().Equal(true, true, true, true, true, false);
        batch.Mask.Should().BeNull("the attention mask travels in the token batch once; the objective falls back to it");
    }

    [Fact]
    public void Masked_LM_chooses_15_percent_of_real_tokens_and_replaces_80_10_10_never_touching_special_tokens()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        var batcher = new TextBatcher(WordPiece(folder), maxLength: 512);
        string text = string.Join(' ', Enumerable.Range(0, 500).Select(i => Vocabulary[5 + i % 8]));
        string[] texts = Enumerable.Repeat(text, 40).ToArray();

        DistillationBatch<TokenBatch> batch = batcher.MaskedLanguageModeling(texts, new Random(11));

        long[] ids = batch.Inputs.InputIds.data<long>().ToArray(), labels = batch.Labels!.data<long>().ToArray();
        long[] original = batcher.CausalLanguageModeling(texts).Inputs.InputIds.data<long>().ToArray();
        int real = original.Count(t => t >= 5), chosen = labels.Count(l => l != -100);
        int masked = 0, random = 0, kept = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            if (labels[i] == -100)
            {
                ids[i].Should().Be(original[i], "unchosen tokens are untouched");
                continue;
            }
            labels[i].Should().Be(original[i]);
            original[i].Should().BeGreaterThanOrEqualTo(5, "special tokens are never chosen");
            if (ids[i] == 4) masked++;
            else if (ids[i] == original[i]) kept++;
            else random++;
        }
        // 20,000 real tokens: the share chosen has a standard deviation of 0.25%; each sub-share of about 1%.
        ((double)chosen / real).Should().BeApproximately(0.15, 0.01);
        ((double)masked / chosen).Should().BeApproximately(0.8, 0.03);
        // A "random" replacement can draw the original token (1 in 13 here), which then counts as kept.
        ((double)random / chosen).Should().BeApproximately(0.1 * 12 / 13, 0.03);
        ((double)kept / chosen).Should().BeApproximately(0.1 + 0.1 / 13, 0.03);
        batcher.MaskedLanguageModeling(texts, new Random(11)).Inputs.InputIds.data<long>().ToArray().Should().Equal(ids, "a seeded Random reproduces the masking");
    }

    [Fact]
    public void Classification_batches_carry_one_label_per_text_and_bad_input_is_named()
    {
        using var scope = NewDisposeScope();
        using var folder = new TemporaryFolder();
        var batcher = new TextBatcher(WordPiece(folder), maxLength: 8);

        DistillationBatch<TokenBatch> batch = batcher.Classification(["a", "b c"], [1, 0]);

        batch.Labels!.data<long>().ToArray().Should().Equal(1, 0);
        batch.Inputs.InputIds.shape.Should().Equal(2, 4);
        batch.Mask.Should().BeNull();
        ((Action)(() => batcher.Classification(["a"], [1, 0]))).Should().Throw<ArgumentException>().WithMessage("classes has 2 entries but texts has 1*");
        ((Action)(() => batcher.CausalLanguageModeling([]))).Should().Throw<ArgumentException>().WithMessage("texts is empty*");
        ((Action)(() => new TextBatcher(WordPiece(folder), maxLength: 3))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("maxLength must leave room*");
    }
}
