namespace KnowledgeDistillation.Training;

/// <summary>How the learning rate decays after warm-up.</summary>
public enum LearningRateDecay
{
    /// <summary>Stays at the peak.</summary>
    Constant,

    /// <summary>Falls linearly to 0 at the last step.</summary>
    Linear,

    /// <summary>Falls along half a cosine to 0 at the last step.</summary>
    Cosine,
}

/// <summary>What a non-finite (NaN or ±∞) loss does.</summary>
public enum NonFiniteLossPolicy
{
    /// <summary>Throw, naming the step and the term; the weights are not updated.</summary>
    Stop,

    /// <summary>Skip the optimizer step (the weights are not updated), count it, and go on.</summary>
    SkipStep,
}

/// <summary>The teacher's precision.</summary>
public enum TeacherPrecision
{
    /// <summary>As the teacher was given.</summary>
    Unchanged,

    /// <summary>bfloat16: half the memory; the losses still compute in float32.</summary>
    BFloat16,

    /// <summary>float16 (GPUs; on CPUs prefer bfloat16).</summary>
    Float16,
}

/// <summary>
/// Settings of a <see cref="DistillationTrainer{TInput}"/>, bindable from configuration (e.g. an
/// <c>appsettings.json</c> section) and validated by <see cref="DistillationTrainerOptionsValidator"/>.
/// </summary>
public sealed class DistillationTrainerOptions
{
    /// <summary>The configuration section name used by <c>AddKnowledgeDistillation(configuration)</c>.</summary>
    public const string SectionName = "KnowledgeDistillation";

    /// <summary>Passes over the training data. Ignored when <see cref="MaxSteps"/> is set.</summary>
    public int Epochs { get; set; } = 1;

    /// <summary>Optimizer steps to run; overrides <see cref="Epochs"/> (the data is repeated as needed).</summary>
    public long? MaxSteps { get; set; }

    /// <summary>Peak learning rate of the default AdamW. A supplied optimizer keeps its own groups' rates as their peaks.</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Steps of linear warm-up from 0 to the peak.</summary>
    public int WarmupSteps { get; set; }

    /// <summary>Decay after warm-up.</summary>
    public LearningRateDecay Decay { get; set; } = LearningRateDecay.Linear;

    /// <summary>AdamW's decoupled weight decay.</summary>
    public double WeightDecay { get; set; } = 0.01;

    /// <summary>Micro-batches per optimizer step; gradients are normalised by the real tokens across them.</summary>
    public int GradientAccumulationSteps { get; set; } = 1;

    /// <summary>Clip the global gradient norm to this; null turns clipping off.</summary>
    public double? MaxGradientNorm { get; set; } = 1.0;

    /// <summary>"auto" (CUDA when the backend provides it, else CPU), "cpu", "cuda" or "cuda:N".</summary>
    public string Device { get; set; } = "auto";

    /// <summary>Seeds torch's RNG at the start of a fresh run (initialisation order, dropout); null leaves it.</summary>
    public long? Seed { get; set; } = 42;

    /// <summary>Evaluate every this many steps (and at the end) when evaluation data is given; 0 = only at the end.</summary>
    public int EvaluationInterval { get; set; }

    /// <summary>Log every this many steps (progress is reported every step).</summary>
    public int LoggingInterval { get; set; } = 10;

    /// <summary>Folder for checkpoints; null writes none.</summary>
    public string? CheckpointDirectory { get; set; }

    /// <summary>Write a checkpoint every this many steps (and at the end and on cancellation); 0 = only then.</summary>
    public int CheckpointInterval { get; set; }

    /// <summary>How many checkpoints to keep (oldest deleted first).</summary>
    public int KeepCheckpoints { get; set; } = 2;

    /// <summary>A checkpoint folder to resume from; null starts fresh (unless <see cref="ResumeFromLatest"/>).</summary>
    public string? ResumeFrom { get; set; }

    /// <summary>
    /// Resume from the newest intact checkpoint in <see cref="CheckpointDirectory"/>, or start fresh when it holds none
    /// (the setting for a job that may be restarted). Not together with <see cref="ResumeFrom"/>.
    /// </summary>
    public bool ResumeFromLatest { get; set; }

    /// <summary>What a NaN or infinite loss does.</summary>
    public NonFiniteLossPolicy NonFiniteLoss { get; set; } = NonFiniteLossPolicy.Stop;

    /// <summary>The teacher's precision.</summary>
    public TeacherPrecision TeacherPrecision { get; set; } = TeacherPrecision.Unchanged;

    /// <summary>
    /// The device of a module teacher when it is not the student's: "cpu" to keep a large teacher in host memory while
    /// the student trains on a GPU, or another "cuda:N". Each micro-batch's inputs go to it and its outputs come back to
    /// the student's device once. Null (default): the student's <see cref="Device"/>. Teachers without weights (caches,
    /// remote teachers) always give their outputs on the student's device.
    /// </summary>
    public string? TeacherDevice { get; set; }
}
