using KnowledgeDistillation.Models;
using Microsoft.ML.OnnxRuntime;

namespace KnowledgeDistillation.Onnx;

/// <summary>Which outputs of an ONNX model an <see cref="OnnxTeacher"/> serves, and how it feeds the model.</summary>
public sealed record OnnxTeacherOptions
{
    /// <summary>The output served as <c>ModelOutput.Logits</c> (a classifier's logits, or an embedding for feature distillation); null takes the model's first output.</summary>
    public string? LogitsOutput { get; init; }

    /// <summary>Outputs served as <c>ModelOutput.HiddenStates</c>, in this order.</summary>
    public IReadOnlyList<string> HiddenStateOutputs { get; init; } = [];

    /// <summary>Flatten every output to <c>[N, features]</c> (e.g. ResNet-18's <c>[N, 512, 1, 1]</c> embedding to <c>[N, 512]</c>).</summary>
    public bool FlattenOutputs { get; init; }

    /// <summary>
    /// How a <c>[N, S, H]</c> logits output (a text encoder's last hidden state) becomes one <c>[N, H]</c> embedding per
    /// text, with the batch's attention mask; <see cref="SequencePooling.None"/> serves it as it is.
    /// </summary>
    public SequencePooling Pooling { get; init; } = SequencePooling.None;

    /// <summary>Divide the logits output, after pooling, by its L2 norm over the last dimension (sentence-transformers' <c>Normalize</c> module).</summary>
    public bool Normalize { get; init; }

    /// <summary>The model's input names for the fields of a <c>TokenBatch</c>; the defaults are Hugging Face's and the library's own exports'.</summary>
    public OnnxTokenInputs TokenInputs { get; init; } = new();

    /// <summary>Rows per ONNX Runtime call. Null uses the model's fixed batch dimension when it has one (padding the last call), else the whole input at once.</summary>
    public int? BatchSize { get; init; }

    /// <summary>
    /// The longest token sequence the model takes (a BERT export's position count, 512 for all-MiniLM-L6-v2): a longer
    /// <c>TokenBatch</c> is refused with the lengths named before ONNX Runtime runs, where it would fail deep inside the
    /// graph. Null checks nothing; cut texts with <c>PretrainedTokenizer.Encode(text, maxLength)</c>.
    /// </summary>
    public int? MaxSequenceLength { get; init; }

    /// <summary>ONNX Runtime session options (threads, execution providers); null uses the defaults.</summary>
    public SessionOptions? SessionOptions { get; init; }
}

/// <summary>
/// The ONNX input names a <see cref="OnnxTeacher"/> fills from a <c>TokenBatch</c>. A model must have the ids input; it
/// may have any of the others, which are filled from the batch or, when the batch lacks them, with ones (mask), zeros
/// (token types) or 0 … S − 1 (positions).
/// </summary>
public sealed record OnnxTokenInputs
{
    /// <summary>The token ids, int64 <c>[batch, sequence]</c>.</summary>
    public string InputIds { get; init; } = "input_ids";

    /// <summary>1 for a real token, 0 for padding.</summary>
    public string AttentionMask { get; init; } = "attention_mask";

    /// <summary>BERT's segment ids.</summary>
    public string TokenTypeIds { get; init; } = "token_type_ids";

    /// <summary>Explicit positions (some decoder exports).</summary>
    public string PositionIds { get; init; } = "position_ids";

    internal IReadOnlyList<string> All => [InputIds, AttentionMask, TokenTypeIds, PositionIds];
}
