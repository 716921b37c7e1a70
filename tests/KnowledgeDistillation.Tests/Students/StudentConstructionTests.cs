using KnowledgeDistillation.Students;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Transformers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Students;

public class StudentConstructionTests
{
    private static GptConfig FourLayerGpt => TinyModels.Gpt() with { Layers = 4 };

    private static Dictionary<string, Tensor> Snapshot(nn.Module m) => m.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());

    [Fact]
    public void An_identity_selection_reproduces_the_teachers_logits_exactly()
    {
        using var scope = NewDisposeScope();
        GptModel gpt = TinyModels.GptModel(seed: 1, config: FourLayerGpt);
        BertModel bert = TinyModels.BertModel(seed: 2);
        Tensor ids = TinyModels.Ids(3, 2, 9, 29);

        GptModel gptStudent = StudentFactory.FromTeacher(gpt, new StudentOptions { Layers = 4, Selection = LayerSelection.FirstK }).Model;
        BertModel bertStudent = StudentFactory.FromTeacher(bert, new StudentOptions { Layers = 3, Selection = LayerSelection.Explicit(0, 1, 2) }).Model;
        gptStudent.eval();
        bertStudent.eval();

        gptStudent.call(ids).IsIdenticalTo(gpt.call(ids)).Should().BeTrue();
        bertStudent.call(ids).IsIdenticalTo(bert.call(ids)).Should().BeTrue();
    }

    [Fact]
    public void Chosen_layers_and_all_other_tensors_are_copied_tensor_by_tensor()
    {
        using var scope = NewDisposeScope();
        GptModel teacher = TinyModels.GptModel(seed: 4, config: FourLayerGpt);

        Student<GptModel> student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 2 });

        student.Transfer.TeacherLayers.Should().Equal(0, 3);
        student.Transfer.Skipped.Should().BeEmpty();
        Dictionary<string, Tensor> t = Snapshot(teacher), s = Snapshot(student.Model);
        s.Keys.Should().BeEquivalentTo(student.Transfer.Copied.Select(c => c.Student));
        foreach ((string name, Tensor value) in s)
        {
            string source = name.StartsWith("blocks.1.", StringComparison.Ordinal) ? "blocks.3." + name["blocks.1.".Length..] : name;
            value.IsIdenticalTo(t[source]).Should().BeTrue($"{name} should be a copy of {source}");
            student.Transfer.Copied.Should().Contain(new CopiedTensor(name, source));
        }
    }

    [Fact]
    public void Training_the_student_leaves_the_teacher_unchanged()
    {
        using var scope = NewDisposeScope();
        GptModel teacher = TinyModels.GptModel(seed: 5, config: FourLayerGpt);
        Dictionary<string, Tensor> before = Snapshot(teacher);
        GptModel student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 2 }).Model;
        var optimizer = optim.SGD(student.parameters(), 0.5);
        Tensor ids = TinyModels.Ids(6, 2, 8, 37);

        for (int step = 0; step < 3; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            student.call(ids).square().mean().backward();
            optimizer.step();
        }

        Snapshot(teacher).Should().AllSatisfy(p => p.Value.IsIdenticalTo(before[p.Key]).Should().BeTrue(p.Key));
        Snapshot(student)["blocks.1.attention.qkv.weight"].IsIdenticalTo(before["blocks.3.attention.qkv.weight"]).Should().BeFalse("the student trained");
    }

    [Fact]
    public void A_student_without_the_pooler_really_has_none_and_copies_the_rest()
    {
        using var scope = NewDisposeScope();
        BertModel teacher = TinyModels.BertModel(seed: 7);

        Student<BertModel> student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 2, UsePooler = false });

        student.Model.Config.UsePooler.Should().BeFalse();
        student.Model.named_parameters().Should().NotContain(p => p.name.StartsWith("pooler", StringComparison.Ordinal));
        student.Transfer.Skipped.Should().BeEmpty();
        student.Transfer.TeacherLayers.Should().Equal(0, 2);
    }

    [Fact]
    public void A_narrower_student_reports_every_tensor_it_could_not_copy()
    {
        using var scope = NewDisposeScope();
        GptModel teacher = TinyModels.GptModel(seed: 8, config: FourLayerGpt);

        Student<GptModel> student = StudentFactory.FromTeacher(teacher, new StudentOptions { Layers = 2, Width = 12, Heads = 3 });

        student.Model.Config.Width.Should().Be(12);
        student.Model.Config.FeedForwardWidth.Should().Be(20, "the teacher's feed-forward ratio (40 / 24) is kept");
        student.Transfer.Copied.Should().BeEmpty("every tensor's shape depends on the width");
        student.Transfer.Skipped.Should().OnlyContain(s => s.Reason == TransferSkipReason.ShapeMismatch);
        student.Transfer.Skipped.Should().Contain(s => s.Student == "token_embedding.weight" && s.Detail == "teacher [37, 24], student [37, 12]");
        student.Transfer.ToString().Should().Contain("skipped token_embedding.weight: ShapeMismatch (teacher [37, 24], student [37, 12])");
    }

    private sealed class LayeredNet : nn.Module<Tensor, Tensor>
    {
        private readonly Linear stem;
        private readonly ModuleList<Linear> layers;
        private readonly Linear head;

        public LayeredNet(int depth, int extra = 0) : base(nameof(LayeredNet))
        {
            stem = nn.Linear(4, 6);
            layers = nn.ModuleList(Enumerable.Range(0, depth).Select(_ => nn.Linear(6, 6)).ToArray());
            head = nn.Linear(6, 2 + extra);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => head.forward(layers.Aggregate(stem.forward(x), (h, l) => l.forward(h).relu()));
    }

    [Fact]
    public void Any_module_with_a_ModuleList_can_be_shrunk()
    {
        using var scope = NewDisposeScope();
        var teacher = new LayeredNet(5);
        var student = new LayeredNet(2, extra: 1);

        TransferReport report = WeightTransfer.Copy(teacher, student, "layers", LayerSelection.LastK.Select(5, 2));

        Dictionary<string, Tensor> t = Snapshot(teacher), s = Snapshot(student);
        s["layers.0.weight"].IsIdenticalTo(t["layers.3.weight"]).Should().BeTrue();
        s["layers.1.bias"].IsIdenticalTo(t["layers.4.bias"]).Should().BeTrue();
        s["stem.weight"].IsIdenticalTo(t["stem.weight"]).Should().BeTrue();
        report.Skipped.Select(x => (x.Student, x.Reason)).Should().BeEquivalentTo(new[] { ("head.weight", TransferSkipReason.ShapeMismatch), ("head.bias", TransferSkipReason.ShapeMismatch) });
    }

    [Fact]
    public void Bad_transfer_requests_fail_clearly()
    {
        var teacher = new LayeredNet(5);
        var student = new LayeredNet(2);

        ((Action)(() => WeightTransfer.Copy(teacher, student, "blocks", [0, 1]))).Should().Throw<ArgumentException>()
            .WithMessage("The teacher has no submodule \"blocks\"; its top-level submodules are: stem, layers, head.*");
        ((Action)(() => WeightTransfer.Copy(teacher, student, "head", [0, 1]))).Should().Throw<ArgumentException>()
            .WithMessage("The teacher's \"head\" is a Linear, not a ModuleList.*");
        ((Action)(() => WeightTransfer.Copy(teacher, student, "layers", [0, 1, 2]))).Should().Throw<ArgumentException>()
            .WithMessage("The layer map has 3 entries but the student's \"layers\" has 2 layers.*");
        ((Action)(() => WeightTransfer.Copy(teacher, student, "layers", [0, 7]))).Should().Throw<ArgumentException>()
            .WithMessage("Student layer 1 maps to teacher layer 7, but the teacher's \"layers\" has layers 0 to 4.*");
        ((Action)(() => StudentFactory.FromTeacher(TinyModels.GptModel(), new StudentOptions { Layers = 3 }))).Should().Throw<ArgumentException>()
            .WithMessage("A student cannot have more layers (3) than its teacher (2)*");
    }
}
