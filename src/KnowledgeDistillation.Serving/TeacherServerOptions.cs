using KnowledgeDistillation.Caching;

namespace KnowledgeDistillation.Serving;

/// <summary>What a teacher server answers and what it accepts (bind from configuration, section "TeacherServer").</summary>
public sealed class TeacherServerOptions
{
    /// <summary>Top-k probabilities (default), or the outputs themselves as float16 or float32 values (pooled features).</summary>
    public TeacherCacheContent Content { get; set; } = TeacherCacheContent.TopKProbabilities;

    /// <summary>k, the classes sent per row of top-k content (default 64).</summary>
    public int TopK { get; set; } = 64;

    /// <summary>T of the top-k probabilities, softmax(z / T) (default 1).</summary>
    public double Temperature { get; set; } = 1.0;

    /// <summary>Token ids must be in [0, VocabularySize): the teacher's input vocabulary. Required.</summary>
    public long VocabularySize { get; set; }

    /// <summary>Sequences in one request (default 256).</summary>
    public int MaxSequencesPerRequest { get; set; } = 256;

    /// <summary>Tokens per sequence (default 2,048).</summary>
    public int MaxSequenceLength { get; set; } = 2048;

    /// <summary>Bytes of one request body (default 16 MiB); a larger body is refused with 413 before it is read.</summary>
    public long MaxRequestBytes { get; set; } = 16 << 20;

    /// <summary>Sequences the server runs in one forward pass, gathered from concurrent requests (default 64).</summary>
    public int MaxBatchSequences { get; set; } = 64;

    /// <summary>How long the first request of a batch waits for others to join it (default 2 ms; 0 runs each request alone).</summary>
    public TimeSpan BatchWindow { get; set; } = TimeSpan.FromMilliseconds(2);

    /// <summary>Requests waiting for the teacher; more are refused with 503 (default 1,024).</summary>
    public int QueueCapacity { get; set; } = 1024;

    /// <summary>When set, every request but health, readiness and metrics must send <c>Authorization: Bearer &lt;key&gt;</c>.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The name the description gives the model (default: its type).</summary>
    public string? ModelName { get; set; }

    /// <summary>For a teacher that is not a TorchSharp module: what identifies it in the fingerprint (e.g. its ONNX file's SHA-256). Required for such teachers.</summary>
    public string? Identity { get; set; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option that is not usable, its rule and its value.</summary>
    public void Validate()
    {
        void Require(bool ok, string name, string rule, object? value)
        {
            if (!ok) throw new ArgumentException($"TeacherServerOptions.{name} {rule}; got {value ?? "null"}.", name);
        }
        Require(Enum.IsDefined(Content), nameof(Content), "must be TopKProbabilities, Float16Values or Float32Values", Content);
        Require(Content != TeacherCacheContent.TopKProbabilities || TopK >= 1, nameof(TopK), "must be at least 1", TopK);
        Require(double.IsFinite(Temperature) && Temperature > 0, nameof(Temperature), "must be a finite number greater than 0", Temperature);
        Require(VocabularySize >= 1, nameof(VocabularySize), "must be the teacher's input vocabulary size (at least 1)", VocabularySize);
        Require(MaxSequencesPerRequest >= 1, nameof(MaxSequencesPerRequest), "must be at least 1", MaxSequencesPerRequest);
        Require(MaxSequenceLength >= 1, nameof(MaxSequenceLength), "must be at least 1", MaxSequenceLength);
        Require(MaxRequestBytes >= 64, nameof(MaxRequestBytes), "must be at least 64", MaxRequestBytes);
        Require(MaxBatchSequences >= 1, nameof(MaxBatchSequences), "must be at least 1", MaxBatchSequences);
        Require(BatchWindow >= TimeSpan.Zero && BatchWindow <= TimeSpan.FromSeconds(1), nameof(BatchWindow), "must be 0 … 1 s", BatchWindow);
        Require(QueueCapacity >= 1, nameof(QueueCapacity), "must be at least 1", QueueCapacity);
        Require(ApiKey is null || ApiKey.Length >= 8, nameof(ApiKey), "must be null or at least 8 characters", ApiKey is null ? null : $"{ApiKey.Length} characters");
    }
}
