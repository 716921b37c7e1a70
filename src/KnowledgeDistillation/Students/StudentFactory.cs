using KnowledgeDistillation.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Students;

/// <summary>How to shrink a teacher into a student.</summary>
public sealed record StudentOptions
{
    /// <summary>Number of student layers.</summary>
    public required int Layers { get; init; }

    /// <summary>Which teacher layers initialise the student's (default: <see cref="LayerSelection.UniformSpread"/>).</summary>
    public LayerSelection Selection { get; init; } = LayerSelection.UniformSpread;

    /// <summary>Student width; null keeps the teacher's. A narrower student cannot copy layer weights (the report says so).</summary>
    public int? Width { get; init; }

    /// <summary>Student heads; null keeps the teacher's.</summary>
    public int? Heads { get; init; }

    /// <summary>Student feed-forward width; null keeps the teacher's ratio to the width.</summary>
    public int? FeedForwardWidth { get; init; }

    /// <summary>Llama-family only: key/value heads of the student's grouped-query attention; null keeps the teacher's.</summary>
    public int? KeyValueHeads { get; init; }

    /// <summary>BERT only: keep the pooler; null keeps the teacher's choice, false removes it as DistilBERT did.</summary>
    public bool? UsePooler { get; init; }
}

/// <summary>A student built from a teacher, with what was copied into it.</summary>
/// <typeparam name="TModel">The model type.</typeparam>
/// <param name="Model">The student, on the teacher's device, in training mode.</param>
/// <param name="Transfer">What was copied from the teacher and what was skipped.</param>
public sealed record Student<TModel>(TModel Model, TransferReport Transfer);

/// <summary>
/// One-call students for the reference transformers: "this teacher with N layers (width W, without the pooler)",
/// initialised from the chosen teacher layers and every other matching tensor (embeddings, norms, heads) — the
/// DistilBERT / DistilGPT2 recipe.
/// </summary>
public static class StudentFactory
{
    /// <summary>A GPT student initialised from <paramref name="teacher"/>.</summary>
    public static Student<GptModel> FromTeacher(GptModel teacher, StudentOptions options)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(options);
        GptConfig config = Shrink(teacher.Config, options);
        return Build(teacher, teacher.Config.Layers, new GptModel(config), options);
    }

    /// <summary>A BERT student initialised from <paramref name="teacher"/>; <see cref="StudentOptions.UsePooler"/> false removes the pooler.</summary>
    public static Student<BertModel> FromTeacher(BertModel teacher, StudentOptions options)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(options);
        BertConfig config = Shrink(teacher.Config, options) with { UsePooler = options.UsePooler ?? teacher.Config.UsePooler };
        return Build(teacher, teacher.Config.Layers, new BertModel(config), options);
    }

    /// <summary>A Llama-family student (Llama, Qwen2, Mistral) initialised from <paramref name="teacher"/>; it keeps the teacher's family, so it saves as the same architecture.</summary>
    public static Student<LlamaModel> FromTeacher(LlamaModel teacher, StudentOptions options)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(options);
        LlamaConfig shrunk = Shrink(teacher.Config, options);
        LlamaConfig config = shrunk with
        {
            KeyValueHeads = options.KeyValueHeads ?? teacher.Config.KeyValueHeads,
            HeadWidth = shrunk.Width == teacher.Config.Width && shrunk.Heads == teacher.Config.Heads ? teacher.Config.HeadWidth : 0,
        };
        return Build(teacher, teacher.Config.Layers, new LlamaModel(config), options);
    }

    private static TConfig Shrink<TConfig>(TConfig teacher, StudentOptions options) where TConfig : TransformerConfig
    {
        int[] _ = options.Selection.Select(teacher.Layers, options.Layers); // validate before building anything
        int width = options.Width ?? teacher.Width;
        int feedForward = options.FeedForwardWidth
            ?? (width == teacher.Width ? teacher.FeedForwardWidth : (int)((long)teacher.EffectiveFeedForwardWidth * width / teacher.Width));
        return teacher with { Layers = options.Layers, Width = width, Heads = options.Heads ?? teacher.Heads, FeedForwardWidth = feedForward };
    }

    private static Student<TModel> Build<TModel>(TModel teacher, int teacherLayers, TModel student, StudentOptions options) where TModel : nn.Module
    {
        Device device = teacher.parameters().First().device;
        if (device.type != DeviceType.CPU) student.to(device);
        int[] layers = options.Selection.Select(teacherLayers, options.Layers);
        TransferReport report = WeightTransfer.Copy(teacher, student, "blocks", layers);
        return new Student<TModel>(student, report);
    }
}
