using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Tests.Losses;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Pretrained;

/// <summary>Teachers and students whose logits differ only by padding rows: detected in every logit term, aligned only after a tokenizer check.</summary>
public class VocabularyAlignmentTests
{
    private static PretrainedTokenizer WordPiece(TemporaryFolder folder, params string[] extra)
    {
        File.WriteAllLines(Path.Combine(folder.Path, "vocab.txt"), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", .. extra]);
        return PretrainedTokenizer.Load(folder.Path);
    }

    private static DistillationContext Context(Tensor student, Tensor teacher) => new([new ModelOutput(teacher)], new ModelOutput(student), null, null, 0);

    [Theory]
    [InlineData("soft")]
    [InlineData("reverse")]
    [InlineData("jsd")]
    public void Every_divergence_term_names_both_widths_and_the_remedy(string term)
    {
        using var scope = NewDisposeScope();
        DistillationObjectiveBuilder builder = DistillationObjective.Create();
        builder = term switch { "soft" => builder.SoftTargets(1), "reverse" => builder.ReverseKL(1), _ => builder.GeneralizedJensenShannon(1, 0.5) };
        DistillationObjective objective = builder.Build();

        ((Action)(() => objective.Compute(Context(randn(2, 3, 9), randn(2, 3, 12))))).Should().Throw<InvalidOperationException>()
            .WithMessage("*the student's logits have 9 entries per row but teacher 0's have 12*AlignVocabularies(VocabularyAlignment.Between(studentTokenizer, teacherTokenizer, 9, 12))*");
    }

    [Fact]
    public void An_alignment_checked_against_the_tokenizers_compares_the_shared_columns_only()
    {
        using var scope = NewDisposeScope();
        using var a = new TemporaryFolder();
        using var b = new TemporaryFolder();
        PretrainedTokenizer student = WordPiece(a, "c"), teacher = WordPiece(b, "c");
        VocabularyAlignment alignment = VocabularyAlignment.Between(student, teacher, studentLogits: 8, teacherLogits: 11);
        DistillationObjective objective = DistillationObjective.Create().AlignVocabularies(alignment).SoftTargets(1, temperature: 2).Build();
        manual_seed(5);
        Tensor s = randn([2, 3, 8], dtype: ScalarType.Float64), t = randn([2, 3, 11], dtype: ScalarType.Float64);

        double actual = objective.Compute(Context(s, t)).Total.to(ScalarType.Float64).item<double>();

        alignment.SharedSize.Should().Be(8);
        double expected = Reference.SoftTargetKl(s.data<double>().ToArray(), t.narrow(-1, 0, 8).contiguous().data<double>().ToArray(), 8, 2.0);
        actual.Should().BeApproximately(expected, 1e-6, "the objective sums its terms in float32");
    }

    [Fact]
    public void Tokenizers_that_differ_are_refused_naming_the_first_differing_token_or_both_sizes()
    {
        using var a = new TemporaryFolder();
        using var b = new TemporaryFolder();
        using var c = new TemporaryFolder();
        PretrainedTokenizer one = WordPiece(a, "c", "d"), other = WordPiece(b, "c", "e"), shorter = WordPiece(c, "c");

        ((Action)(() => VocabularyAlignment.Between(one, other, 10, 12))).Should().Throw<ArgumentException>()
            .WithMessage("Token id 8 decodes to \"d\" in the student's tokenizer but to \"e\" in the teacher's*");
        ((Action)(() => VocabularyAlignment.Between(one, shorter, 10, 12))).Should().Throw<ArgumentException>()
            .WithMessage("The student's tokenizer has 9 tokens and the teacher's 8*");
        ((Action)(() => VocabularyAlignment.Between(one, one, 8, 12))).Should().Throw<ArgumentException>()
            .WithMessage("The tokenizers produce ids up to 8, but the narrower model has only 8 logits per token*");
    }
}
