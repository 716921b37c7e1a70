using KnowledgeDistillation.Students;

namespace KnowledgeDistillation.Tests.Students;

public class LayerSelectionTests
{
    public static TheoryData<string, int, int, int[]> Expected() => new()
    {
        { "every-other", 12, 6, [0, 2, 4, 6, 8, 10] },
        { "every-other", 12, 4, [0, 2, 4, 6] },
        { "every-other", 12, 3, [0, 2, 4] },
        { "every-other", 6, 3, [0, 2, 4] },
        { "uniform", 12, 6, [0, 2, 4, 7, 9, 11] },
        { "uniform", 12, 4, [0, 4, 7, 11] },
        { "uniform", 12, 3, [0, 6, 11] },
        { "uniform", 6, 3, [0, 3, 5] },
        { "uniform", 4, 4, [0, 1, 2, 3] },
        { "uniform", 5, 1, [0] },
        { "first-k", 12, 6, [0, 1, 2, 3, 4, 5] },
        { "first-k", 12, 4, [0, 1, 2, 3] },
        { "first-k", 12, 3, [0, 1, 2] },
        { "first-k", 6, 3, [0, 1, 2] },
        { "first-k", 4, 4, [0, 1, 2, 3] },
        { "last-k", 12, 6, [6, 7, 8, 9, 10, 11] },
        { "last-k", 12, 4, [8, 9, 10, 11] },
        { "last-k", 12, 3, [9, 10, 11] },
        { "last-k", 6, 3, [3, 4, 5] },
        { "last-k", 4, 4, [0, 1, 2, 3] },
    };

    private static LayerSelection Strategy(string name) => name switch
    {
        "every-other" => LayerSelection.EveryOther,
        "uniform" => LayerSelection.UniformSpread,
        "first-k" => LayerSelection.FirstK,
        _ => LayerSelection.LastK,
    };

    [Theory]
    [MemberData(nameof(Expected))]
    public void Each_strategy_selects_the_documented_layers(string strategy, int teacher, int student, int[] expected)
    {
        Strategy(strategy).Select(teacher, student).Should().Equal(expected);
    }

    [Fact]
    public void Every_other_cannot_fill_as_many_layers_as_the_teacher_has()
    {
        ((Action)(() => LayerSelection.EveryOther.Select(4, 4))).Should().Throw<ArgumentException>()
            .WithMessage("every-other needs 2 × 4 − 1 = 7 teacher layers for 4 student layers; the teacher has 4. Use UniformSpread or FirstK.*");
    }

    [Fact]
    public void An_explicit_list_is_used_as_given_and_validated()
    {
        LayerSelection.Explicit(1, 5, 9).Select(12, 3).Should().Equal(1, 5, 9);

        ((Action)(() => LayerSelection.Explicit(1, 1, 2).Select(12, 3))).Should().Throw<ArgumentException>().WithMessage("explicit [1, 1, 2] selects teacher layer 1 more than once.*");
        ((Action)(() => LayerSelection.Explicit(0, 12, 3).Select(12, 3))).Should().Throw<ArgumentException>().WithMessage("explicit [0, 12, 3] selects teacher layer 12, but the teacher's layers are 0 to 11.*");
        ((Action)(() => LayerSelection.Explicit(0, 1).Select(12, 3))).Should().Throw<ArgumentException>().WithMessage("explicit [0, 1] selects 2 teacher layers, but the student has 3.*");
    }

    [Fact]
    public void More_student_layers_than_teacher_layers_is_refused()
    {
        ((Action)(() => LayerSelection.UniformSpread.Select(4, 6))).Should().Throw<ArgumentException>()
            .WithMessage("A student cannot have more layers (6) than its teacher (4) when initialised from teacher layers.*");
        ((Action)(() => LayerSelection.FirstK.Select(4, 0))).Should().Throw<ArgumentOutOfRangeException>().WithMessage("studentLayers must be positive; got 0.*");
    }
}
