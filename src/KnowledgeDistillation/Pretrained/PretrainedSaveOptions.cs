using static TorchSharp.torch;

using KnowledgeDistillation.Transformers;

namespace KnowledgeDistillation.Pretrained;

/// <summary>How <see cref="PretrainedFolder.Save"/> writes a folder.</summary>
public sealed record PretrainedSaveOptions
{
    /// <summary>The dtype of the saved weights: Float32 (default), BFloat16 or Float16. <c>config.json</c>'s <c>torch_dtype</c> says which.</summary>
    public ScalarType Dtype { get; init; } = ScalarType.Float32;

    /// <summary>Split the weights into shards of at most this many bytes (a tensor larger than the limit gets a shard of its own),
    /// with a <c>model.safetensors.index.json</c>; null writes one <c>model.safetensors</c>.</summary>
    public long? MaxShardBytes { get; init; }

    /// <summary>
    /// A pretrained folder (usually the teacher's) whose tokenizer files are copied beside the weights, and whose
    /// <c>config.json</c> lends its other fields (token ids, label names) to the saved one. Null copies nothing.
    /// </summary>
    public string? CopyTokenizerFrom { get; init; }

    /// <summary>The tokenizer and generation files <see cref="CopyTokenizerFrom"/> copies when present.</summary>
    public static IReadOnlyList<string> TokenizerFiles { get; } =
    [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
        "merges.txt", "tokenizer.model", "generation_config.json",
    ];

    internal void Validate()
    {
        if (Dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
        {
            throw new ArgumentException($"{nameof(Dtype)} must be Float32, BFloat16 or Float16; got {Dtype}.", nameof(Dtype));
        }
        if (MaxShardBytes is <= 0) throw new ArgumentException($"{nameof(MaxShardBytes)} must be null or positive; got {MaxShardBytes}.", nameof(MaxShardBytes));
        if (CopyTokenizerFrom is not null && !Directory.Exists(CopyTokenizerFrom))
        {
            throw new ArgumentException($"{nameof(CopyTokenizerFrom)} must be an existing folder; {CopyTokenizerFrom} is not.", nameof(CopyTokenizerFrom));
        }
    }
}
