using KnowledgeDistillation.Formats;
using System.Runtime.InteropServices;
using KnowledgeDistillation.Caching;
using KnowledgeDistillation.Generation;
using KnowledgeDistillation.Losses;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Pretrained;
using KnowledgeDistillation.Students;
using KnowledgeDistillation.Tests.Transformers;
using KnowledgeDistillation.Training;
using KnowledgeDistillation.Transformers;
using Microsoft.Extensions.Options;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests;

/// <summary>
/// Bad input against every documented entry point — losses, top-k targets, models, adapters, layer maps, student
/// construction, objective builder, options, trainer, teacher cache. Each must end in a clear .NET exception
/// (an ArgumentException naming its argument, or an options, invalid-operation, not-supported or invalid-data
/// exception with a message), never a libtorch ExternalException, a DivideByZeroException or another raw runtime
/// error, and never a silent result. The counts are written to the test output.
/// </summary>
public class BadInputSweepTests(ITestOutputHelper output)
{
    private readonly List<(string Case, string Outcome, string Detail)> _results = [];

    private void Try(string name, Action action)
    {
        try
        {
            action();
            _results.Add((name, "silent", "no exception"));
        }
        catch (ArgumentException e) when (!string.IsNullOrEmpty(e.ParamName))
        {
            _results.Add((name, "clear", e.Message));
        }
        catch (Exception e) when (e is OptionsValidationException or InvalidOperationException or NotSupportedException or InvalidDataException or FileNotFoundException
                                   or DirectoryNotFoundException or NonFiniteLossException)
        {
            _results.Add((name, "clear", e.Message));
        }
        catch (Exception e)
        {
            _results.Add((name, e is ExternalException or DivideByZeroException ? "native/raw" : "raw", $"{e.GetType().Name}: {e.Message}"));
        }
    }

    [Fact]
    public void Every_bad_input_gets_a_clear_exception_and_none_a_native_error_or_a_silent_result()
    {
        Losses();
        ModelsAndAdapters();
        StudentsAndMaps();
        ObjectivesOptionsAndTrainer();
        Cache();
        Pretrained();
        GenerationAndLargeVocabularies();

        foreach (var group in _results.GroupBy(r => r.Outcome)) output.WriteLine($"{group.Key}: {group.Count()}");
        foreach (var r in _results.Where(r => r.Outcome != "clear")) output.WriteLine($"  {r.Case}: {r.Detail}");
        output.WriteLine($"total: {_results.Count}");
        _results.Should().HaveCountGreaterThanOrEqualTo(150);
        _results.Where(r => r.Outcome != "clear").Select(r => $"{r.Case}: {r.Detail}").Should().BeEmpty();
    }

    private void Losses()
    {
        var logitLosses = new (string Name, Func<LogitDistillationLoss> Create)[]
        {
            ("SoftTargetKL", () => new SoftTargetKLLoss()), ("ReverseKL", () => new ReverseKLLoss()), ("JSD", () => new GeneralizedJensenShannonLoss()),
            ("TVD", () => new TotalVariationLoss()), ("SkewKL", () => new SkewKLLoss()), ("SkewReverseKL", () => new SkewKLLoss(reverse: true)),
        };
        foreach (var (name, create) in logitLosses)
        {
            foreach (bool chunked in new[] { false, true })
            {
                string n = $"{name}{(chunked ? " chunked" : "")}";
                LogitDistillationLoss L()
                {
                    LogitDistillationLoss loss = create();
                    if (chunked) loss.MaxChunkElements = 4;
                    return loss;
                }
                Try($"{n}: rank 1", () => L().forward(zeros(5), zeros(5)));
                Try($"{n}: rank 4", () => L().forward(zeros(1, 2, 3, 4), zeros(1, 2, 3, 4)));
                Try($"{n}: vocabulary mismatch", () => L().forward(zeros(2, 3), zeros(2, 4)));
                Try($"{n}: batch mismatch", () => L().forward(zeros(2, 3), zeros(3, 3)));
                Try($"{n}: integer student", () => L().forward(zeros(2, 3, dtype: ScalarType.Int64), zeros(2, 3)));
                Try($"{n}: integer teacher", () => L().forward(zeros(2, 3), zeros(2, 3, dtype: ScalarType.Int32)));
                Try($"{n}: complex", () => L().forward(zeros(2, 3, dtype: ScalarType.ComplexFloat32), zeros(2, 3, dtype: ScalarType.ComplexFloat32)));
                Try($"{n}: mask shape", () => L().forward(zeros(2, 3), zeros(2, 3), ones(3, dtype: ScalarType.Bool)));
                Try($"{n}: mask float", () => L().forward(zeros(2, 3), zeros(2, 3), ones(2)));
                Try($"{n}: labels shape", () => L().forward(zeros(2, 4, 3), zeros(2, 4, 3), null, zeros(2, dtype: ScalarType.Int64)));
                Try($"{n}: labels float", () => L().forward(zeros(2, 3), zeros(2, 3), null, zeros(2)));
                Try($"{n}: labels bool", () => L().forward(zeros(2, 3), zeros(2, 3), null, ones(2, dtype: ScalarType.Bool)));
                foreach (double t in new[] { 0, -1, double.NaN, double.PositiveInfinity }) Try($"{n}: temperature {t}", () => L().forward(zeros(2, 3), zeros(2, 3), null, null, t));
                Try($"{n}: chunk 0", () => L().MaxChunkElements = 0);
                Try($"{n}: reduction 7", () => L().Reduction = (RowReduction)7);
                Try($"{n}: null student", () => L().forward(null!, zeros(2, 3)));
            }
        }
        foreach (double beta in new[] { -0.1, 1.1, double.NaN }) Try($"JSD: beta {beta}", () => _ = new GeneralizedJensenShannonLoss(beta));
        foreach (double alpha in new[] { -0.1, 1.0, double.NaN }) Try($"SkewKL: alpha {alpha}", () => _ = new SkewKLLoss(alpha));
        Try("Objective: SkewKL alpha 1", () => DistillationObjective.Create().SkewKL(1, 1.0).Build());

        var ce = new HardTargetCrossEntropyLoss();
        Try("CE: rank 1", () => ce.forward(zeros(3), zeros(3, dtype: ScalarType.Int64)));
        Try("CE: labels shape", () => ce.forward(zeros(2, 3), zeros(3, dtype: ScalarType.Int64)));
        Try("CE: labels float", () => ce.forward(zeros(2, 3), zeros(2)));
        Try("CE: label too large", () => ce.forward(zeros(2, 3), tensor(new long[] { 0, 3 })));
        Try("CE: label negative", () => ce.forward(zeros(2, 3), tensor(new long[] { 0, -2 })));
        Try("CE smoothed: label too large", () => new HardTargetCrossEntropyLoss(labelSmoothing: 0.1).forward(zeros(2, 3), tensor(new[] { 0, 7 })));
        Try("CE: int32 label too large", () => ce.forward(zeros(2, 3), tensor(new[] { 0, 3 })));
        Try("CE: mask shape", () => ce.forward(zeros(2, 3), zeros(2, dtype: ScalarType.Int64), ones(5, dtype: ScalarType.Bool)));
        Try("CE: integer logits", () => ce.forward(zeros(2, 3, dtype: ScalarType.Int64), zeros(2, dtype: ScalarType.Int64)));
        foreach (double e in new[] { -0.1, 1.5, double.NaN }) Try($"CE: smoothing {e}", () => _ = new HardTargetCrossEntropyLoss(labelSmoothing: e));

        foreach (string kind in new[] { "cosine", "mse" })
        {
            HiddenStateLoss Loss(long? s = null, long? t = null) => kind == "cosine" ? new CosineEmbeddingLoss(s, t) : new HiddenStateMseLoss(s, t);
            Try($"{kind}: width mismatch without projection", () => Loss().forward(zeros(2, 4), zeros(2, 5)));
            Try($"{kind}: wrong student width for projection", () => Loss(4, 8).forward(zeros(2, 5), zeros(2, 8)));
            Try($"{kind}: wrong teacher width for projection", () => Loss(4, 8).forward(zeros(2, 4), zeros(2, 9)));
            Try($"{kind}: leading shape", () => Loss().forward(zeros(2, 3, 4), zeros(2, 2, 4)));
            Try($"{kind}: rank 4", () => Loss().forward(zeros(1, 2, 3, 4), zeros(1, 2, 3, 4)));
            Try($"{kind}: integer", () => Loss().forward(zeros(2, 4, dtype: ScalarType.Int64), zeros(2, 4)));
            Try($"{kind}: mask shape", () => Loss().forward(zeros(2, 4), zeros(2, 4), ones(4, dtype: ScalarType.Bool)));
            Try($"{kind}: zero width", () => Loss(0, 4));
            Try($"{kind}: one width only", () => Loss(4, null));
        }

        var attention = new AttentionMseLoss();
        Try("attention: rank 3", () => attention.forward(zeros(2, 3, 3), zeros(2, 3, 3)));
        Try("attention: zero student heads", () => attention.forward(zeros(2, 0, 3, 3), zeros(2, 2, 3, 3)));
        Try("attention: zero teacher heads", () => attention.forward(zeros(2, 2, 3, 3), zeros(2, 0, 3, 3)));
        Try("attention: heads do not group", () => attention.forward(zeros(2, 2, 3, 3), zeros(2, 3, 3, 3)));
        Try("attention: sequence mismatch", () => attention.forward(zeros(2, 2, 3, 3), zeros(2, 2, 4, 4)));
        Try("attention: padding shape", () => attention.forward(zeros(2, 2, 3, 3), zeros(2, 2, 3, 3), ones(2, 4, dtype: ScalarType.Bool)));
        Try("attention: padding non-square", () => attention.forward(zeros(2, 2, 3, 4), zeros(2, 2, 3, 4), ones(2, 3, dtype: ScalarType.Bool)));
        Try("attention: integer maps", () => attention.forward(zeros(2, 2, 3, 3, dtype: ScalarType.Int64), zeros(2, 2, 3, 3)));
        Try("attention: NaN threshold", () => _ = new AttentionMseLoss(AttentionMapKind.Scores, double.NaN));
        Try("attention: kind 9", () => _ = new AttentionMseLoss((AttentionMapKind)9));

        var topK = new TopKSoftTargetLoss();
        foreach (double t in new[] { -1, 0, double.NaN }) Try($"TopKTargets: temperature {t}", () => _ = new TopKTargets(full(2, 3, 1.0 / 3), zeros(2, 2, dtype: ScalarType.Int64), t));
        Try("TopKTargets: negative index", () => _ = new TopKTargets(full(2, 3, 1.0 / 3), tensor(new long[] { 0, -1, 1, 2 }, 2, 2), 1));
        Try("TopKTargets: float indices", () => _ = new TopKTargets(full(2, 3, 1.0 / 3), zeros(2, 2), 1));
        Try("TopKTargets: integer probabilities", () => _ = new TopKTargets(zeros(2, 3, dtype: ScalarType.Int64), zeros(2, 2, dtype: ScalarType.Int64), 1));
        Try("TopKTargets: shapes", () => _ = new TopKTargets(full(2, 4, 0.25), zeros(2, 2, dtype: ScalarType.Int64), 1));
        Try("TopK loss: index beyond vocabulary", () => topK.forward(zeros(2, 5), new TopKTargets(full(2, 3, 1.0 / 3), tensor(new long[] { 0, 1, 2, 5 }, 2, 2), 1)));
        Try("TopK loss: rows mismatch", () => topK.forward(zeros(3, 5), new TopKTargets(full(2, 3, 1.0 / 3), zeros(2, 2, dtype: ScalarType.Int64), 1)));
        Try("TopK loss: k beyond vocabulary", () => topK.forward(zeros(2, 2), new TopKTargets(full(2, 4, 0.25), zeros(2, 3, dtype: ScalarType.Int64), 1)));
        Try("Rows.Kept: mask shape", () => Rows.Kept([2, 3], ones(3, dtype: ScalarType.Bool)));
    }

    private void ModelsAndAdapters()
    {
        GptModel gpt = TinyModels.GptModel();
        BertModel bert = TinyModels.BertModel();
        Try("GPT: empty batch", () => gpt.Run(new TokenBatch(zeros(0, 4, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));
        Try("GPT: empty sequence", () => gpt.Run(new TokenBatch(zeros(2, 0, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));
        Try("GPT: too long", () => gpt.Run(new TokenBatch(zeros(1, 17, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));
        Try("GPT: id beyond vocabulary", () => gpt.Run(new TokenBatch(full(1, 4, 37L)), OutputRequest.LogitsOnly));
        Try("GPT: negative id", () => gpt.Run(new TokenBatch(full(1, 4, -1L)), OutputRequest.LogitsOnly));
        Try("GPT: float ids", () => gpt.Run(new TokenBatch(zeros(1, 4)), OutputRequest.LogitsOnly));
        Try("GPT: rank 1 ids", () => gpt.Run(new TokenBatch(zeros(4, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));
        Try("GPT: attention mask shape", () => gpt.Run(new TokenBatch(zeros(2, 4, dtype: ScalarType.Int64), ones(2, 5, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));
        Try("GPT: token types", () => gpt.Run(new TokenBatch(zeros(2, 4, dtype: ScalarType.Int64), null, zeros(2, 4, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));
        Try("BERT: type id beyond range", () => bert.Run(new TokenBatch(zeros(2, 4, dtype: ScalarType.Int64), null, full(2, 4, 5L)), OutputRequest.LogitsOnly));
        Try("BERT: float attention mask", () => bert.Run(new TokenBatch(zeros(2, 4, dtype: ScalarType.Int64), ones(2, 4)), OutputRequest.LogitsOnly));
        Try("BERT: empty batch", () => bert.Run(new TokenBatch(zeros(0, 4, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));
        Try("GPT config: heads do not divide width", () => _ = new GptModel(TinyModels.Gpt() with { Heads = 5 }));
        Try("GPT config: zero layers", () => _ = new GptModel(TinyModels.Gpt() with { Layers = 0 }));
        Try("GPT config: negative vocabulary", () => _ = new GptModel(TinyModels.Gpt() with { VocabSize = -1 }));
        Try("GPT config: dropout 1.5", () => _ = new GptModel(TinyModels.Gpt() with { Dropout = 1.5 }));

        var mlp = Student();
        Try("FromLogits: null", () => DistillationModel.FromLogits(null!));
        Try("FromLogits: hidden states requested", () => DistillationModel.FromLogits(mlp).Run(zeros(2, Features), new OutputRequest(HiddenStates: true)));
        Try("FromFunction: null", () => DistillationModel.FromFunction<Tensor>(null!));
        Try("Capture: unknown module", () => DistillationModel.WithCapturedHiddenStates(mlp, "no.such.module"));
        Try("Capture: attention requested", () => DistillationModel.WithCapturedHiddenStates(mlp, "0").Run(zeros(2, Features), new OutputRequest(AttentionScores: true)));
        Try("Capture: no names", () => DistillationModel.WithCapturedHiddenStates(mlp));
    }

    private void StudentsAndMaps()
    {
        GptModel gpt = TinyModels.GptModel();
        Try("Student: more layers than the teacher", () => StudentFactory.FromTeacher(gpt, new StudentOptions { Layers = 3 }));
        Try("Student: zero layers", () => StudentFactory.FromTeacher(gpt, new StudentOptions { Layers = 0 }));
        Try("Student: heads do not divide width", () => StudentFactory.FromTeacher(gpt, new StudentOptions { Layers = 1, Heads = 5 }));
        Try("Selection: explicit out of range", () => LayerSelection.Explicit(0, 9).Select(4, 2));
        Try("Selection: explicit wrong count", () => LayerSelection.Explicit(0).Select(4, 2));
        Try("Selection: more student layers", () => LayerSelection.EveryOther.Select(2, 4));
        Try("Map: heads do not group", () => LayerSelection.FirstK.Map(4, 2, 8, 8, 4, 3));
        Try("Map: zero width", () => LayerSelection.FirstK.Map(4, 2, 0, 8, 4, 2));
        Try("Map: pairs repeat a layer", () => LayerMap.FromPairs([new LayerPair(0, 1), new LayerPair(0, 2)], 8, 8, 2, 2));
        Try("Map: negative layer", () => LayerMap.FromPairs([new LayerPair(-1, 1)], 8, 8, 2, 2));
        Try("Map: no pairs", () => LayerMap.FromPairs([], 8, 8, 2, 2));
        Try("Compression: runs 0", () => CompressionReport.Compare(gpt, gpt, _ => { }, runs: 0));
    }

    private void ObjectivesOptionsAndTrainer()
    {
        Try("Objective: no terms", () => DistillationObjective.Create().Build());
        Try("Objective: duplicate names", () => DistillationObjective.Create().SoftTargets(1.0).SoftTargets(1.0).Build());
        Try("Objective: negative weight", () => DistillationObjective.Create().SoftTargets(-1.0).Build());
        Try("Objective: NaN weight", () => DistillationObjective.Create().SoftTargets(double.NaN));
        Try("Objective: weight schedule to -1", () => DistillationObjective.Create().HardTargets(Schedule.Linear(1, -1, 10)).Build());
        Try("Objective: temperature 0", () => DistillationObjective.Create().SoftTargets(1.0, temperature: 0.0));
        Try("Objective: beta 2", () => DistillationObjective.Create().GeneralizedJensenShannon(1.0, beta: 2.0));
        Try("Objective: teacher weights empty", () => DistillationObjective.Create().TeacherWeights());
        Try("Objective: teacher weights negative", () => DistillationObjective.Create().TeacherWeights(1, -1));
        Try("Objective: teacher index -1", () => DistillationObjective.Create().HiddenStateMse(1.0, LayerMap.FromPairs([new LayerPair(0, 0)], 4, 4, 1, 1), teacher: -1));
        Try("Objective: schedule steps 0", () => Schedule.Linear(0, 1, 0));
        Try("Objective: term without name", () => new ObjectiveTerm(" ", 1.0, c => c.Student.Logits.sum()));

        var teacher = Teacher();
        List<DistillationBatch<Tensor>> data = Data(teacher, 2, 8, 1);
        DistillationObjective Soft() => DistillationObjective.Create().SoftTargets(1.0).HardTargets(1.0).Build();
        DistillationTrainer<Tensor> Trainer(Action<DistillationTrainerOptions> change, DistillationObjective? objective = null, int teachers = 1) =>
            new(Enumerable.Repeat(DistillationModel.FromLogits(teacher), teachers).ToList<IDistillationModel<Tensor>>(), DistillationModel.FromLogits(Student()),
                objective ?? Soft(), Options(2, change));
        foreach ((string field, Action<DistillationTrainerOptions> change) in new (string, Action<DistillationTrainerOptions>)[]
        {
            ("Epochs 0", o => { o.MaxSteps = null; o.Epochs = 0; }), ("MaxSteps 0", o => o.MaxSteps = 0), ("LearningRate -1", o => o.LearningRate = -1),
            ("LearningRate NaN", o => o.LearningRate = double.NaN), ("WarmupSteps -1", o => o.WarmupSteps = -1), ("Decay 9", o => o.Decay = (LearningRateDecay)9),
            ("WeightDecay -1", o => o.WeightDecay = -1), ("GradientAccumulationSteps 0", o => o.GradientAccumulationSteps = 0),
            ("MaxGradientNorm 0", o => o.MaxGradientNorm = 0), ("Device gpu", o => o.Device = "gpu"), ("Device null", o => o.Device = null!),
            ("Device cuda", o => o.Device = "cuda"), ("EvaluationInterval -1", o => o.EvaluationInterval = -1), ("LoggingInterval 0", o => o.LoggingInterval = 0),
            ("CheckpointInterval without folder", o => o.CheckpointInterval = 5), ("KeepCheckpoints 0", o => o.KeepCheckpoints = 0),
            ("latest without folder", o => o.ResumeFromLatest = true), ("latest as a folder name", o => o.ResumeFrom = "latest"), ("ResumeFrom empty", o => o.ResumeFrom = ""),
            ("CheckpointDirectory empty", o => o.CheckpointDirectory = ""), ("CheckpointDirectory NUL", o => o.CheckpointDirectory = "a\0b"),
            ("NonFiniteLoss 5", o => o.NonFiniteLoss = (NonFiniteLossPolicy)5), ("TeacherPrecision 5", o => o.TeacherPrecision = (TeacherPrecision)5),
            ("ResumeFrom missing folder", o => o.ResumeFrom = "/no/such/checkpoint-3"),
        })
        {
            Try($"Trainer option: {field}", () => Trainer(change).Train(data));
        }
        Try("Trainer: no teacher for a soft term", () => Trainer(_ => { }, teachers: 0));
        Try("Trainer: teacher weights for 3, 2 teachers", () => Trainer(_ => { }, DistillationObjective.Create().TeacherWeights(1, 1, 1).SoftTargets(1.0).Build(), teachers: 2));
        Try("Trainer: hidden states from a logits-only teacher", () => Trainer(_ => { },
            DistillationObjective.Create().Term("h", 1.0, c => c.Student.Logits.sum(), teacherNeeds: new OutputRequest(HiddenStates: true)).Build()));
        Try("Trainer: hidden states from a logits-only student", () => Trainer(_ => { },
            DistillationObjective.Create().Term("h", 1.0, c => c.Student.Logits.sum(), studentNeeds: new OutputRequest(HiddenStates: true)).Build()));
        Try("Trainer: empty data", () => Trainer(_ => { }).Train([]));
        Try("Trainer: batch mask shape", () => Trainer(_ => { }).Train(data.Select(b => b with { Mask = ones(3, dtype: ScalarType.Bool) }).ToList()));
        Try("Trainer: labels beyond classes", () => Trainer(_ => { }).Train(data.Select(b => b with { Labels = full(8, 9L) }).ToList()));
        Try("Trainer: hard term without labels", () => Trainer(_ => { }).Train(data.Select(b => b with { Labels = null }).ToList()));
        Try("Trainer: evaluation without labels", () => Trainer(_ => { }).Evaluate(data.Select(b => b with { Labels = null }).ToList()));
        Try("Trainer: wrong input width", () => Trainer(_ => { }).Train(data.Select(b => b with { Inputs = zeros(8, Features + 1) }).ToList()));
        Try("Trainer: custom term with a shape error", () => Trainer(_ => { }, DistillationObjective.Create().Term("bad", 1.0, c => c.Student.Logits.reshape(-1, 7).sum()).Build()).Train(data));
        Try("Trainer: NaN loss under Stop", () => Trainer(_ => { }, DistillationObjective.Create().Term("nan", 1.0, c => c.Student.Logits.sum() * double.NaN).Build()).Train(data));
    }

    private void Cache()
    {
        using var folder = new TemporaryFolder();
        Try("Cache writer: k 0", () => _ = new TeacherCacheWriter(folder.PathOf("a.kdtc"), 0, 1.0));
        Try("Cache writer: temperature -1", () => _ = new TeacherCacheWriter(folder.PathOf("a.kdtc"), 2, -1));
        Try("Cache writer: empty path", () => _ = new TeacherCacheWriter("", 2, 1.0));
        Try("Cache: missing file", () => TeacherCache.Open(folder.PathOf("missing.kdtc")));
        folder.Write("garbage.kdtc", [1, 2, 3, 4, 5, 6, 7, 8]);
        Try("Cache: garbage file", () => TeacherCache.Open(folder.PathOf("garbage.kdtc")));
        using (var writer = new TeacherCacheWriter(folder.PathOf("ok.kdtc"), 2, 1.0))
        {
            Try("Cache writer: integer logits", () => writer.Append(zeros(2, 5, dtype: ScalarType.Int64)));
            Try("Cache writer: k beyond classes", () => writer.Append(zeros(2, 1)));
            writer.Append(randn(4, 5));
            writer.Complete();
            Try("Cache writer: append after complete", () => writer.Append(randn(4, 5)));
        }
        using TeacherCache cache = TeacherCache.Open(folder.PathOf("ok.kdtc"));
        Try("Cache: index beyond", () => cache.Read(tensor(new long[] { 0, 4 })));
        Try("Cache: negative index", () => cache.Read(tensor(new long[] { -1 })));
        Try("Cache: float indices", () => cache.Read(zeros(2)));
    }

    private void Pretrained()
    {
        LlamaConfig llama = new() { VocabSize = 20, Width = 16, Heads = 4, KeyValueHeads = 2, Layers = 1, FeedForwardWidth = 24, ContextLength = 8 };
        Try("Llama: KeyValueHeads 3", () => _ = new LlamaModel(llama with { KeyValueHeads = 3 }));
        Try("Llama: KeyValueHeads -1", () => _ = new LlamaModel(llama with { KeyValueHeads = -1 }));
        Try("Llama: odd head width", () => _ = new LlamaModel(llama with { HeadWidth = 5 }));
        Try("Llama: RopeTheta 0", () => _ = new LlamaModel(llama with { RopeTheta = 0 }));
        Try("Llama: SlidingWindow 0", () => _ = new LlamaModel(llama with { SlidingWindow = 0 }));
        Try("Llama: post-norm", () => _ = new LlamaModel(llama with { NormPlacement = NormPlacement.Post }));
        var model = new LlamaModel(llama);
        Try("Llama: id out of range", () => model.Run(new TokenBatch(tensor(new long[,] { { 0, 20 } })), OutputRequest.LogitsOnly));
        Try("Llama: float ids", () => model.Run(new TokenBatch(zeros(1, 3)), OutputRequest.LogitsOnly));
        Try("Llama: too long", () => model.Run(new TokenBatch(zeros(1, 9, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));
        Try("Llama: mask shape", () => model.Run(new TokenBatch(zeros(1, 3, dtype: ScalarType.Int64), ones(1, 4, dtype: ScalarType.Bool)), OutputRequest.LogitsOnly));
        Try("Llama: token types", () => model.Run(new TokenBatch(zeros(1, 3, dtype: ScalarType.Int64), null, zeros(1, 3, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly));

        using var folder = new TemporaryFolder();
        Try("Load: missing folder", () => PretrainedFolder.Load(folder.PathOf("none")));
        Try("Load: no config.json", () => PretrainedFolder.Load(folder.Path));
        Try("Load: empty path", () => PretrainedFolder.Load(""));
        File.WriteAllText(folder.PathOf("config.json"), "{ not json");
        Try("Load: invalid JSON", () => PretrainedFolder.Load(folder.Path));
        File.WriteAllText(folder.PathOf("config.json"), "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 20, \"hidden_size\": 16, \"intermediate_size\": 24, \"num_hidden_layers\": 1, \"num_attention_heads\": 4}");
        Try("Load: config without weights", () => PretrainedFolder.Load(folder.Path));
        Try("Load<GptModel>: Llama folder", () => PretrainedFolder.Load<GptModel>(folder.Path));
        Try("Save: Int32 dtype", () => PretrainedFolder.Save(model, folder.PathOf("out"), new PretrainedSaveOptions { Dtype = ScalarType.Int32 }));
        Try("Save: shard limit 0", () => PretrainedFolder.Save(model, folder.PathOf("out"), new PretrainedSaveOptions { MaxShardBytes = 0 }));
        Try("Save: missing tokenizer folder", () => PretrainedFolder.Save(model, folder.PathOf("out"), new PretrainedSaveOptions { CopyTokenizerFrom = folder.PathOf("none") }));
        Try("Save: empty folder name", () => PretrainedFolder.Save(model, ""));
        Try("Save: null model", () => PretrainedFolder.Save(null!, folder.Path));
        Try("Safetensors: complex tensor", () => SafetensorsFile.Write(folder.PathOf("c.safetensors"), new Dictionary<string, Tensor> { ["c"] = zeros(2, dtype: ScalarType.ComplexFloat32) }));
        File.WriteAllBytes(folder.PathOf("short.safetensors"), [1, 2, 3]);
        Try("Safetensors: 3-byte file", () => SafetensorsFile.ReadHeader(folder.PathOf("short.safetensors")));
        File.WriteAllText(folder.PathOf("bad.index.json"), "{\"weight_map\": {\"a\": \"../escape.safetensors\"}}");
        Try("Shard index: path outside the folder", () => ShardIndex.Read(folder.PathOf("bad.index.json")));
        Try("Tokenizer: missing folder", () => PretrainedTokenizer.Load(folder.PathOf("none")));
        Try("Tokenizer: no files", () => PretrainedTokenizer.Load(folder.Path));
        Try("Tokenizer: wrap null", () => PretrainedTokenizer.FromTokenizer(null!, 10));
        Try("Tokenizer: vocabulary 0", () => PretrainedTokenizer.FromTokenizer(Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForModel("gpt2"), 0));
        PretrainedTokenizer gpt2 = PretrainedTokenizer.FromTokenizer(Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForModel("gpt2"), 50257, new SpecialTokenIds { Eos = 50256 });
        Try("Batcher: null tokenizer", () => _ = new TextBatcher(null!, 16));
        Try("Batcher: maxLength 1", () => _ = new TextBatcher(gpt2, 1));
        var batcher = new TextBatcher(gpt2, 16);
        Try("Batcher: null texts", () => batcher.CausalLanguageModeling(null!));
        Try("Batcher: a null text", () => batcher.CausalLanguageModeling(["a", null!]));
        Try("Batcher: masked LM without a mask token", () => batcher.MaskedLanguageModeling(["a"], new Random(1)));
        Try("Batcher: mask probability 0", () => batcher.MaskedLanguageModeling(["a"], new Random(1), 0));
        Try("Batcher: null random", () => batcher.MaskedLanguageModeling(["a"], null!));
        Try("Batcher: classes count", () => batcher.Classification(["a", "b"], [1]));
        Try("Alignment: size 0", () => VocabularyAlignment.TruncateWithoutChecking(0));
        Try("Alignment: null tokenizer", () => VocabularyAlignment.Between(null!, gpt2, 10, 10));
        Try("Alignment: negative logits", () => VocabularyAlignment.Between(gpt2, gpt2, -1, 10));
        Try("Alignment: narrower logits", () => VocabularyAlignment.TruncateWithoutChecking(10).Apply(zeros(2, 5), "student's"));
        Try("Objective: null alignment", () => DistillationObjective.Create().AlignVocabularies(null!));
        Try("StudentFactory: null Llama teacher", () => StudentFactory.FromTeacher((LlamaModel)null!, new StudentOptions { Layers = 1 }));
        Try("StudentFactory: Llama KeyValueHeads 3", () => StudentFactory.FromTeacher(model, new StudentOptions { Layers = 1, KeyValueHeads = 3 }));
        Try("Checkpoint: Llama weights into GPT", () => HuggingFaceCheckpointLoadGptFromLlama());
    }

    private static void HuggingFaceCheckpointLoadGptFromLlama()
    {
        string llama = Path.Combine(BuildFacts.RepositoryRoot, "tests", "KnowledgeDistillation.Tests", "Fixtures", "Pretrained", "llama");
        KnowledgeDistillation.Pretrained.PretrainedFolder.LoadWeights(TinyModels.GptModel(), llama);
    }

    private void GenerationAndLargeVocabularies()
    {
        var model = new LlamaModel(new LlamaConfig { VocabSize = 20, Width = 16, Heads = 4, KeyValueHeads = 2, Layers = 1, FeedForwardWidth = 24, ContextLength = 12 });
        Tensor prompts = zeros(2, 4, dtype: ScalarType.Int64);
        Try("Generate: null model", () => TextGeneration.Generate(null!, prompts, null, new GenerationOptions()));
        Try("Generate: float prompts", () => TextGeneration.Generate(model, zeros(2, 4), null, new GenerationOptions()));
        Try("Generate: rank-1 prompts", () => TextGeneration.Generate(model, zeros(4, dtype: ScalarType.Int64), null, new GenerationOptions()));
        Try("Generate: beyond the context", () => TextGeneration.Generate(model, prompts, null, new GenerationOptions { MaxNewTokens = 9 }));
        Try("Generate: mask shape", () => TextGeneration.Generate(model, prompts, ones(2, 5, dtype: ScalarType.Bool), new GenerationOptions { MaxNewTokens = 2 }));
        Try("Generate: right padding", () => TextGeneration.Generate(model, prompts, tensor(new bool[,] { { true, true, false, false }, { true, true, true, true } }), new GenerationOptions { MaxNewTokens = 2 }));
        Try("Generate: an empty row", () => TextGeneration.Generate(model, prompts, tensor(new bool[,] { { false, false, false, false }, { true, true, true, true } }), new GenerationOptions { MaxNewTokens = 2 }));
        foreach (var (name, options) in new (string, GenerationOptions)[]
        {
            ("MaxNewTokens 0", new() { MaxNewTokens = 0 }), ("temperature 0", new() { Temperature = 0 }), ("temperature NaN", new() { Temperature = double.NaN }),
            ("TopK -1", new() { TopK = -1 }), ("TopP 0", new() { TopP = 0 }), ("TopP 1.5", new() { TopP = 1.5 }), ("EOS -1", new() { EosTokenId = -1 }), ("pad -1", new() { PadTokenId = -1 }),
        })
        {
            Try($"Generate: {name}", () => TextGeneration.Generate(model, prompts, null, options));
        }
        Try("KV cache: past beyond the context", () =>
        {
            using var cache = new KeyValueCache();
            model.Run(new TokenBatch(zeros(1, 10, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly, cache);
            model.Run(new TokenBatch(zeros(1, 3, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly, cache);
        });
        Try("KV cache: mask not covering the cache", () =>
        {
            using var cache = new KeyValueCache();
            model.Run(new TokenBatch(zeros(1, 3, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly, cache);
            model.Run(new TokenBatch(zeros(1, 1, dtype: ScalarType.Int64), ones(1, 1, dtype: ScalarType.Bool)), OutputRequest.LogitsOnly, cache);
        });
        Try("Positions: out of range", () => model.Run(new TokenBatch(zeros(1, 3, dtype: ScalarType.Int64)) { PositionIds = tensor(new long[,] { { 0, 1, 12 } }) }, OutputRequest.LogitsOnly));
        Try("Positions: on BERT", () => TinyModels.BertModel().Run(new TokenBatch(zeros(1, 3, dtype: ScalarType.Int64)) { PositionIds = zeros(1, 3, dtype: ScalarType.Int64) }, OutputRequest.LogitsOnly));
        Try("OnPolicy: lambda 1.5", () => _ = new OnPolicyBatches(model, model, new OnPolicyOptions { StudentFraction = 1.5 }));
        Try("OnPolicy: sequence-level without a teacher", () => _ = new OnPolicyBatches(model, null, new OnPolicyOptions { SequenceLevel = true }));
        Try("OnPolicy: data batch without completions", () => new OnPolicyBatches(model, null, new OnPolicyOptions { StudentFraction = 0 }).Next(new PromptBatch(prompts), 0));
        Try("OnPolicy: negative position", () => new OnPolicyBatches(model, null, new OnPolicyOptions { StudentFraction = 1 }).Next(new PromptBatch(prompts), -1));
        Try("OnPolicy: assemble with other row counts", () => OnPolicyBatches.Assemble(prompts, null, zeros(3, 2, dtype: ScalarType.Int64), null));
        using var folder = new TemporaryFolder();
        Try("Shards: empty prompts", () => GenerationShards.Write(model, [], folder.Path, new GenerationOptions()));
        Try("Shards: 0 per shard", () => GenerationShards.Write(model, [new PromptBatch(prompts)], folder.Path, new GenerationOptions(), batchesPerShard: 0));
        Try("Shards: read a folder without a manifest", () => GenerationShards.Read(folder.Path));
        Try("Fused: null divergence", () => _ = new FusedLinearDistillationLoss(null!));
        Try("Fused: negative weight", () => _ = new FusedLinearDistillationLoss(new SoftTargetKLLoss(), distillationWeight: -1));
        var fused = new FusedLinearDistillationLoss(new ReverseKLLoss(), hardWeight: 0.5);
        Try("Fused: width mismatch", () => fused.forward(zeros(3, 4), zeros(5, 6), zeros(3, 5), zeros(3, dtype: ScalarType.Int64)));
        Try("Fused: teacher rows", () => fused.forward(zeros(3, 4), zeros(5, 4), zeros(2, 5), zeros(3, dtype: ScalarType.Int64)));
        Try("Fused: labels shape", () => fused.forward(zeros(3, 4), zeros(5, 4), zeros(3, 5), zeros(2, dtype: ScalarType.Int64)));
        Try("Fused: 3-D hidden", () => fused.forward(zeros(1, 3, 4), zeros(5, 4), zeros(3, 5), zeros(3, dtype: ScalarType.Int64)));
        Try("Fused: dtype mismatch", () => fused.forward(zeros(3, 4), zeros(5, 4, dtype: ScalarType.Float64), zeros(3, 5), zeros(3, dtype: ScalarType.Int64)));
        Try("Fused: teacher head width", () => fused.forward(zeros(3, 4), zeros(5, 4), new TeacherHead(zeros(3, 6), zeros(5, 7)), zeros(3, dtype: ScalarType.Int64)));
    }
}
