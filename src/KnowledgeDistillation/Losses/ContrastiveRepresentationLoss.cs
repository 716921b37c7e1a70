using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Losses;

/// <summary>
/// Contrastive representation distillation (CRD; Tian et al., "Contrastive Representation Distillation", ICLR 2020):
/// the student's embedding of an example should be closer to the teacher's embedding of the same example than to the
/// teacher's embeddings of other examples, and vice versa, with the other examples' embeddings drawn from a memory
/// bank that covers the whole training set. As the authors' code (RepDistiller) does:
/// <list type="bullet">
/// <item>both models' features go through a learned linear embedding to <see cref="EmbeddingWidth"/> (128) and unit L2 norm: v_s, v_t;</item>
/// <item>two memory banks (<c>[dataset size, 128]</c> buffers, initialised uniformly in ±1/√(128/3)) hold every example's
/// latest student and teacher embeddings;</item>
/// <item>for example i with K negatives j: scores h_t(i, j) = exp(M_s[j] · v_t,i / τ) / Z_t against the student bank (j = i the
/// positive), and h_s(i, j) = exp(M_t[j] · v_s,i / τ) / Z_s against the teacher bank, where Z is set once, on the first batch,
/// to mean(exp(·/τ)) × dataset size, and kept;</item>
/// <item>each side's NCE loss: −Σ_i [log(h⁺ / (h⁺ + K/n + ε)) + Σ_j log((K/n) / (h_j + K/n + ε))] / batch, ε = 10⁻⁷;
/// the loss is the sum of both sides;</item>
/// <item>after the scores, the banks move towards this batch: M[i] ← normalise(m · M[i] + (1 − m) · v_i), m = 0.5.</item>
/// </list>
/// </summary>
/// <remarks>
/// <para>
/// Negatives: RepDistiller's default ("exact" mode) samples them from other classes, which needs labels. Here they are
/// drawn uniformly from the dataset other than the example itself, which needs none (the paper's general form);
/// pass your own <c>[N, K]</c> negative indices to <see cref="forward(Tensor, Tensor, Tensor, Tensor?)"/> for class-aware sampling. The draw uses
/// TorchSharp's global generator, so a seeded run is repeatable.
/// </para>
/// <para>
/// The banks and the normalisation constants are buffers: they are saved with the objective in checkpoints and move
/// with it between devices. They are updated in place by every training call; evaluation calls should not go
/// through this loss. The embeddings' parameters train with the student (both of them: the teacher's embedding is
/// learned too, as in CRD). RepDistiller weights CRD by 0.8 alongside cross-entropy and KD.
/// </para>
/// </remarks>
public sealed class ContrastiveRepresentationLoss : nn.Module<Tensor, Tensor, Tensor, Tensor>, IStepOutcomeAware
{
    private const double Epsilon = 1e-7;
    private readonly Linear student_embedding;
    private readonly Linear teacher_embedding;
    private readonly Tensor student_memory;
    private readonly Tensor teacher_memory;
    private readonly Tensor normalizers; // [Z_t, Z_s], −1 until the first batch sets them
    private bool _normalizersKnownSet; // saves a host read per step once Z is known to be set (also after loading a checkpoint)
    private readonly List<(Tensor Positives, Tensor Student, Tensor Teacher)> _pending = []; // bank moves held until the step's outcome is known
    private bool _deferUpdates;

    /// <summary>Creates the loss with RepDistiller's defaults.</summary>
    /// <param name="studentWidth">The student's feature width (features are flattened per example).</param>
    /// <param name="teacherWidth">The teacher's feature width.</param>
    /// <param name="datasetSize">n, the number of training examples (the banks' rows; example indices lie in [0, n)).</param>
    /// <param name="negatives">K, negatives per example; at least 1 and less than n.</param>
    /// <param name="temperature">τ; finite and &gt; 0.</param>
    /// <param name="momentum">m of the bank update, in [0, 1).</param>
    /// <param name="embeddingWidth">The shared embedding width.</param>
    public ContrastiveRepresentationLoss(long studentWidth, long teacherWidth, long datasetSize, int negatives = 16384, double temperature = 0.07, double momentum = 0.5, long embeddingWidth = 128)
        : base(nameof(ContrastiveRepresentationLoss))
    {
        Validate(studentWidth, teacherWidth, datasetSize, negatives, temperature, momentum, embeddingWidth);
        Temperature = temperature;
        Momentum = momentum;
        DatasetSize = datasetSize;
        Negatives = negatives;
        EmbeddingWidth = embeddingWidth;
        student_embedding = nn.Linear(studentWidth, embeddingWidth);
        teacher_embedding = nn.Linear(teacherWidth, embeddingWidth);
        double bound = 1.0 / Math.Sqrt(embeddingWidth / 3.0);
        // Buffers outlive any dispose scope the constructor runs in.
        student_memory = (rand(datasetSize, embeddingWidth) * (2 * bound) - bound).DetachFromDisposeScope();
        teacher_memory = (rand(datasetSize, embeddingWidth) * (2 * bound) - bound).DetachFromDisposeScope();
        normalizers = full(2, -1.0f).DetachFromDisposeScope();
        RegisterComponents();
    }

    /// <summary>n, the rows of each memory bank.</summary>
    public long DatasetSize { get; }

    /// <summary>K, negatives per example.</summary>
    public int Negatives { get; }

    /// <summary>τ.</summary>
    public double Temperature { get; }

    /// <summary>m, the bank momentum.</summary>
    public double Momentum { get; }

    /// <summary>The shared embedding width.</summary>
    public long EmbeddingWidth { get; }

    /// <summary>The student-side bank, <c>[n, width]</c> (a buffer).</summary>
    public Tensor StudentMemory => student_memory;

    /// <summary>The teacher-side bank, <c>[n, width]</c> (a buffer).</summary>
    public Tensor TeacherMemory => teacher_memory;

    /// <summary>[Z_t, Z_s]: the normalisation constants, −1 until the first batch sets them (a buffer).</summary>
    public Tensor Normalizers => normalizers;

    /// <summary>The loss for a batch, with negatives drawn uniformly.</summary>
    /// <param name="studentFeatures">Student features <c>[N, ...]</c> (flattened to the student width).</param>
    /// <param name="teacherFeatures">Teacher features <c>[N, ...]</c> (detached inside).</param>
    /// <param name="exampleIndices">The examples' positions in the training set, <c>[N]</c>.</param>
    public override Tensor forward(Tensor studentFeatures, Tensor teacherFeatures, Tensor exampleIndices) => forward(studentFeatures, teacherFeatures, exampleIndices, null);

    /// <summary>The loss for a batch, optionally with given negatives.</summary>
    /// <param name="studentFeatures">Student features <c>[N, ...]</c>.</param>
    /// <param name="teacherFeatures">Teacher features <c>[N, ...]</c> (detached inside).</param>
    /// <param name="exampleIndices">The examples' positions in the training set, <c>[N]</c>.</param>
    /// <param name="negativeIndices">Optional <c>[N, K]</c> positions of each example's negatives; drawn uniformly (never the example itself) when null.</param>
    public Tensor forward(Tensor studentFeatures, Tensor teacherFeatures, Tensor exampleIndices, Tensor? negativeIndices)
    {
        ArgumentNullException.ThrowIfNull(studentFeatures);
        ArgumentNullException.ThrowIfNull(teacherFeatures);
        ArgumentNullException.ThrowIfNull(exampleIndices);
        LossInputs.RequireFloating(studentFeatures, nameof(studentFeatures));
        LossInputs.RequireFloating(teacherFeatures, nameof(teacherFeatures));
        long n = studentFeatures.dim() > 0 ? studentFeatures.shape[0] : 0;
        if (studentFeatures.dim() < 2 || teacherFeatures.dim() < 2 || teacherFeatures.shape[0] != n)
        {
            throw new ArgumentException($"studentFeatures and teacherFeatures must be [N, ...] with the same N; got {Shapes.Describe(studentFeatures.shape)} and {Shapes.Describe(teacherFeatures.shape)}.", nameof(teacherFeatures));
        }
        if (exampleIndices.dim() != 1 || exampleIndices.shape[0] != n || !is_integral(exampleIndices.dtype) || exampleIndices.dtype == ScalarType.Bool)
        {
            throw new ArgumentException($"exampleIndices must be [N] = [{n}] integer positions in the training set; got {exampleIndices.dtype} {Shapes.Describe(exampleIndices.shape)}.", nameof(exampleIndices));
        }
        if (negativeIndices is not null && (negativeIndices.dim() != 2 || negativeIndices.shape[0] != n || negativeIndices.shape[1] != Negatives))
        {
            throw new ArgumentException($"negativeIndices must be [N, K] = [{n}, {Negatives}]; got {Shapes.Describe(negativeIndices.shape)}.", nameof(negativeIndices));
        }
        long w = studentFeatures.shape[1..].Aggregate(1L, (a, b) => a * b), wt = teacherFeatures.shape[1..].Aggregate(1L, (a, b) => a * b);
        if (w != student_embedding.in_features || wt != teacher_embedding.in_features)
        {
            throw new ArgumentException($"The features must flatten to the widths the loss was built for: student {student_embedding.in_features}, teacher {teacher_embedding.in_features}; " +
                $"got {Shapes.Describe(studentFeatures.shape)} ({w}) and {Shapes.Describe(teacherFeatures.shape)} ({wt}).", w != student_embedding.in_features ? nameof(studentFeatures) : nameof(teacherFeatures));
        }
        if (n == 0) return zeros([], dtype: studentFeatures.dtype, device: studentFeatures.device); // an empty batch: no loss, and the banks and Z stay as they are
        Device device = student_memory.device;
        // Checked on every device (a host read of the indices): an index past the bank would be a native error or, on a GPU, an assertion.
        long[] positions = RequireIndices(exampleIndices, "exampleIndices");
        if (negativeIndices is not null) RequireIndexRange(negativeIndices, "negativeIndices");

        using var scope = NewDisposeScope();
        Tensor positives = exampleIndices.to(ScalarType.Int64, device);
        Tensor negatives = negativeIndices?.to(ScalarType.Int64, device) ?? DrawNegatives(positives);
        Tensor candidates = cat([positives.unsqueeze(1), negatives], 1); // [N, K + 1], the positive first

        Tensor vs = Embed(student_embedding, studentFeatures.reshape(n, -1));
        Tensor vt = Embed(teacher_embedding, teacherFeatures.detach().reshape(n, -1));
        // Scores of each anchor against the other model's bank (bank rows are constants: detached, as in CRD).
        Tensor teacherAnchored = Scores(student_memory, candidates, vt);
        Tensor studentAnchored = Scores(teacher_memory, candidates, vs);
        if (!_normalizersKnownSet)
        {
            using var noGrad = no_grad();
            // Z is fixed from the first batch: mean score × n, as in RepDistiller.
            if (normalizers[0].to(ScalarType.Float64).item<double>() < 0)
            {
                normalizers.copy_(stack([teacherAnchored.mean(), studentAnchored.mean()]).to(normalizers.dtype) * DatasetSize);
            }
            _normalizersKnownSet = true;
        }
        Tensor loss = NoiseContrastive(teacherAnchored / normalizers[0]) + NoiseContrastive(studentAnchored / normalizers[1]);

        using (no_grad())
        {
            // One bank row per example: when an example occurs twice in a batch its last occurrence moves the row, so the
            // update is deterministic (index_copy_ with repeated indices is not). Rows with a non-finite embedding are left
            // as they are, so one bad batch cannot poison the banks for every later one.
            Tensor keep = LastFiniteOccurrences(positions, vs, vt, device);
            var update = (positives.index_select(0, keep), vs.detach().index_select(0, keep), vt.detach().index_select(0, keep));
            if (_deferUpdates) _pending.Add((update.Item1.DetachFromDisposeScope(), update.Item2.DetachFromDisposeScope(), update.Item3.DetachFromDisposeScope()));
            else Apply(update);
        }
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// In a <c>DistillationTrainer</c> the banks move only when the optimizer step is taken: a step skipped for a
    /// non-finite loss (<c>NonFiniteLossPolicy.SkipStep</c>) leaves them as they were. Called by the trainer.
    /// </summary>
    void IStepOutcomeAware.DeferUntilStepOutcome() => _deferUpdates = true;

    /// <inheritdoc />
    void IStepOutcomeAware.StepOutcome(bool applied)
    {
        using var noGrad = no_grad();
        foreach (var update in _pending)
        {
            if (applied) Apply(update);
            update.Positives.Dispose();
            update.Student.Dispose();
            update.Teacher.Dispose();
        }
        _pending.Clear();
    }

    private void Apply((Tensor Positives, Tensor Student, Tensor Teacher) update)
    {
        using var scope = NewDisposeScope();
        Update(student_memory, update.Positives, update.Student);
        Update(teacher_memory, update.Positives, update.Teacher);
    }

    /// <summary>The batch rows whose example occurs for the last time in the batch and whose embeddings are finite.</summary>
    private static Tensor LastFiniteOccurrences(long[] positions, Tensor vs, Tensor vt, Device device)
    {
        bool[] finite = vs.isfinite().all(1).logical_and(vt.isfinite().all(1)).cpu().data<bool>().ToArray();
        var last = new Dictionary<long, int>();
        for (int i = 0; i < positions.Length; i++) last[positions[i]] = i;
        long[] rows = [.. last.Values.Where(i => finite[i]).Order().Select(i => (long)i)];
        return tensor(rows, dtype: ScalarType.Int64, device: device);
    }

    private static Tensor Embed(Linear embedding, Tensor features)
    {
        Tensor e = embedding.forward(features.to(embedding.weight!.dtype));
        return e / e.square().sum(1, keepdim: true).clamp_min(1e-24).sqrt();
    }

    /// <summary>exp(M[j] · v_i / τ) for each anchor i and its candidates j: <c>[N, K + 1]</c>.</summary>
    private Tensor Scores(Tensor memory, Tensor candidates, Tensor anchors)
    {
        Tensor rows = memory.index_select(0, candidates.reshape(-1)).reshape(candidates.shape[0], candidates.shape[1], -1).detach();
        return (rows.bmm(anchors.unsqueeze(2)).squeeze(2) / Temperature).exp();
    }

    /// <summary>The NCE loss of Tian et al.'s Eq. 18 with a uniform noise distribution 1/n over K negatives.</summary>
    private Tensor NoiseContrastive(Tensor h)
    {
        double noise = Negatives / (double)DatasetSize;
        Tensor positive = h.select(1, 0), negative = h.narrow(1, 1, Negatives);
        Tensor logPositive = (positive / (positive + noise + Epsilon)).log();
        Tensor logNegative = (noise / (negative + noise + Epsilon)).log();
        return -(logPositive.sum() + logNegative.sum()) / h.shape[0];
    }

    private void Update(Tensor memory, Tensor positives, Tensor embeddings)
    {
        Tensor moved = memory.index_select(0, positives) * Momentum + embeddings * (1 - Momentum);
        memory.index_copy_(0, positives, moved / moved.square().sum(1, keepdim: true).sqrt().clamp_min(1e-12));
    }

    /// <summary>K uniform draws per example from [0, n) without the example itself: draw from n − 1 values and skip over the positive.</summary>
    internal Tensor DrawNegatives(Tensor positives)
    {
        Tensor draws = randint(0, DatasetSize - 1, [positives.shape[0], Negatives], dtype: ScalarType.Int64, device: positives.device);
        return draws + draws.ge(positives.unsqueeze(1)).to(ScalarType.Int64);
    }

    /// <summary>The indices on the host, each checked to lie in [0, n).</summary>
    private long[] RequireIndices(Tensor indices, string name)
    {
        using var scope = NewDisposeScope();
        long[] values = indices.to(ScalarType.Int64).cpu().data<long>().ToArray();
        foreach (long value in values)
        {
            if (value < 0 || value >= DatasetSize) throw new ArgumentException($"{name} must lie in [0, {DatasetSize}) (the dataset size the loss was built for); found {value}.", name);
        }
        return values;
    }

    private void RequireIndexRange(Tensor indices, string name)
    {
        if (indices.numel() == 0) return;
        using var scope = NewDisposeScope();
        long low = indices.min().item<long>(), high = indices.max().item<long>();
        if (low < 0 || high >= DatasetSize)
        {
            throw new ArgumentException($"{name} must lie in [0, {DatasetSize}) (the dataset size the loss was built for); found {(low < 0 ? low : high)}.", name);
        }
    }

    /// <summary>Checks the constructor's arguments without building the banks (the objective builder checks them up front).</summary>
    internal static void Validate(long studentWidth, long teacherWidth, long datasetSize, int negatives, double temperature, double momentum, long embeddingWidth)
    {
        static void Positive(long value, string name)
        {
            if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive; got {value}.");
        }
        Positive(studentWidth, nameof(studentWidth));
        Positive(teacherWidth, nameof(teacherWidth));
        Positive(embeddingWidth, nameof(embeddingWidth));
        if (datasetSize < 2) throw new ArgumentOutOfRangeException(nameof(datasetSize), datasetSize, $"datasetSize must be at least 2 (an example and a negative); got {datasetSize}.");
        if (negatives < 1 || negatives >= datasetSize)
        {
            throw new ArgumentOutOfRangeException(nameof(negatives), negatives, $"negatives must lie in [1, datasetSize) = [1, {datasetSize}); got {negatives}.");
        }
        if (!double.IsFinite(temperature) || temperature <= 0) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, $"temperature must be finite and positive; got {temperature}.");
        if (momentum is not (>= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, $"momentum must lie in [0, 1); got {momentum}.");
    }
}
