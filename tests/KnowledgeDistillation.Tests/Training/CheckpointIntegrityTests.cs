using System.Text;
using System.Text.Json;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Objectives;
using KnowledgeDistillation.Training;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;
using TorchSharp;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Training.TrainingFixtures;

namespace KnowledgeDistillation.Tests.Training;

/// <summary>
/// Checkpoints as a database's write path: manifest with checksums, verification before any state is touched,
/// fallback to the newest checkpoint that verifies, settings compared on resume, stale writes removed.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public sealed class CheckpointIntegrityTests : IDisposable
{
    private const long Steps = 14;
    private static readonly string[] Files = ["student.dat", "objective.dat", "optimizer.dat", "trainer.json", "manifest.json"];
    private readonly nn.Module<Tensor, Tensor> _teacher = Teacher();
    private readonly List<DistillationBatch<Tensor>> _batches;
    private readonly TemporaryFolder _folder = new();
    private readonly Dictionary<long, Dictionary<string, Tensor>> _weightsAt = [];
    private readonly ITestOutputHelper _output;

    public CheckpointIntegrityTests(ITestOutputHelper output)
    {
        _output = output;
        _batches = Data(_teacher, 8, 16, 21);
        // One uninterrupted run with checkpoints at steps 6, 12 and 14, remembering the student's weights at each.
        var student = Student(seed: 5, dropout: 0.2);
        Trainer(student, _folder.Path, null).Train(_batches, callbacks: [new SnapshotAt(student, _weightsAt)]);
    }

    public void Dispose() => _folder.Dispose();

    private string CheckpointPath(long step) => Path.Combine(_folder.Path, $"checkpoint-{step}");

    private DistillationTrainer<Tensor> Trainer(nn.Module<Tensor, Tensor> student, string folder, string? resume, Action<DistillationTrainerOptions>? change = null,
        ILogger? logger = null, DistillationObjective? objective = null) =>
        new(DistillationModel.FromLogits(_teacher), DistillationModel.FromLogits(student),
            objective ?? DistillationObjective.Create().SoftTargets(0.7, temperature: 2).HardTargets(0.3).Build(),
            Options(Steps, o =>
            {
                o.GradientAccumulationSteps = 2;
                o.CheckpointDirectory = folder;
                o.CheckpointInterval = 6;
                o.KeepCheckpoints = 3;
                Resume.Into(o, resume);
                change?.Invoke(o);
            }), logger);

    [Fact]
    public void Every_checkpoint_has_a_manifest_with_the_checksum_of_each_file_the_step_and_the_signatures()
    {
        Checkpoints.List(_folder.Path).Select(c => c.Step).Should().Equal(6, 12, 14);
        Directory.GetFiles(CheckpointPath(14)).Select(Path.GetFileName).Should().BeEquivalentTo(Files);
        using JsonDocument manifest = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(CheckpointPath(14), "manifest.json")));
        JsonElement root = manifest.RootElement;
        root.GetProperty("Step").GetInt64().Should().Be(14);
        root.GetProperty("LibraryVersion").GetString().Should().StartWith("0.2.0");
        string studentSha = root.GetProperty("Files").GetProperty("student.dat").GetProperty("Sha256").GetString()!;
        studentSha.Should().Be(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(CheckpointPath(14), "student.dat")))).ToLowerInvariant());
        root.GetProperty("Student").EnumerateArray().Select(e => e.GetProperty("Name").GetString()).Should().Equal("0.weight", "0.bias", "3.weight", "3.bias");
        root.GetProperty("Settings").GetProperty("ObjectiveTerms").EnumerateArray().Select(e => e.GetString()).Should().Equal("soft", "hard");
        root.GetProperty("Settings").GetProperty("GradientAccumulationSteps").GetInt32().Should().Be(2);
        root.GetProperty("Settings").GetProperty("MicroBatchRows").GetInt64().Should().Be(16);
        Checkpoints.Verify(CheckpointPath(14)).IsValid.Should().BeTrue();
    }

    [Theory]
    [InlineData("student.dat")]
    [InlineData("optimizer.dat")]
    [InlineData("objective.dat")]
    public void Random_bytes_in_a_weights_file_are_caught_by_its_checksum_and_change_nothing(string file)
    {
        string path = Path.Combine(CheckpointPath(14), file);
        byte[] bytes = File.ReadAllBytes(path);
        new Random(7).NextBytes(bytes.AsSpan(bytes.Length - 64 > 0 ? bytes.Length - 64 : 0, Math.Min(64, bytes.Length)));
        File.WriteAllBytes(path, bytes);

        ResumeFails(CheckpointPath(14)).Which.Message.Should().Contain(file).And.Contain("SHA-256");
    }

    [Fact]
    public void Sixteen_flipped_sign_bits_in_the_student_are_caught()
    {
        string path = Path.Combine(CheckpointPath(14), "student.dat");
        byte[] bytes = File.ReadAllBytes(path);
        for (int i = 0; i < 16; i++) bytes[bytes.Length - 1 - 4 * i] ^= 0x80; // the sign bit of the last 16 float32 values
        File.WriteAllBytes(path, bytes);

        ResumeFails(CheckpointPath(14)).Which.Message.Should().Contain("student.dat");
    }

    [Fact]
    public void An_rng_state_of_the_wrong_length_is_an_error_naming_the_file_not_a_native_abort()
    {
        string path = Path.Combine(CheckpointPath(14), "trainer.json");
        var state = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(File.ReadAllBytes(path))!;
        var edited = state.ToDictionary(p => p.Key, p => (object)p.Value);
        edited["RngState"] = Convert.ToBase64String(new byte[100]);
        File.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(edited));
        Reseal(CheckpointPath(14)); // as if the checkpoint had been written that way: only the length check can catch it

        ResumeFails(CheckpointPath(14)).Which.Message.Should().Contain("trainer.json").And.Contain("RNG state of 100 bytes");
    }

    [Theory]
    [InlineData("MicroBatchesIntoEpoch", 1_000_000_000_000L, "MicroBatchesIntoEpoch is 1000000000000; it must be at most step × GradientAccumulationSteps (28).")]
    [InlineData("Epoch", 15L, "Epoch is 15; it must be at most the step (14).")]
    public void An_impossible_position_in_a_resealed_checkpoint_is_refused_before_the_student_is_touched(string field, long value, string message)
    {
        string path = Path.Combine(CheckpointPath(14), "trainer.json");
        var state = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(File.ReadAllBytes(path))!;
        var edited = state.ToDictionary(p => p.Key, p => (object)p.Value);
        edited[field] = value;
        File.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(edited));
        Reseal(CheckpointPath(14)); // every checksum matches: only the ranges can catch it

        Checkpoints.Verify(CheckpointPath(14)).Problem.Should().EndWith(message);
        ResumeFails(CheckpointPath(14)).Which.Message.Should().Contain("trainer.json").And.Contain(message);
    }

    [Fact]
    public void Resuming_with_less_data_than_the_checkpoint_consumed_in_its_epoch_is_an_error_not_a_silent_skip()
    {
        // Checkpoint 6 was written 12 micro-batches into a run whose epochs have 8: epoch 1, 4 micro-batches in. Resume with 2 per epoch.
        var student = Student(seed: 78, dropout: 0.2);

        FluentActions.Invoking(() => Trainer(student, _folder.Path, CheckpointPath(6)).Train(_batches.Take(2).ToList()))
            .Should().Throw<InvalidOperationException>().WithMessage("The checkpoint says 4 micro-batches of epoch 1 had been consumed, but the data of that epoch has only 2*");
    }

    [Theory]
    [InlineData("optimizer.dat")]
    [InlineData("objective.dat")]
    [InlineData("student.dat")]
    public void A_truncated_file_that_passes_its_checksum_fails_before_the_student_is_touched(string file)
    {
        // A file truncated before its checksum was taken (a writer bug, not a disk fault): reading into temporaries catches it.
        string path = Path.Combine(CheckpointPath(14), file);
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..Math.Max(0, bytes.Length - 9)]);
        Reseal(CheckpointPath(14));

        ResumeFails(CheckpointPath(14)).Which.Message.Should().Contain(file);
    }

    [Fact]
    public void Latest_falls_back_to_the_newest_checkpoint_that_verifies_and_warns_about_each_one_skipped()
    {
        File.WriteAllText(Path.Combine(CheckpointPath(14), "trainer.json"), "{}");
        File.Delete(Path.Combine(CheckpointPath(12), "manifest.json"));
        var logger = new RecordingLogger();
        var student = Student(seed: 77, dropout: 0.2);

        TrainingResult result = Trainer(student, _folder.Path, Resume.Latest, o => o.MaxSteps = 6, logger).Train(_batches);

        result.Steps.Should().Be(6, "checkpoint-6 is the newest intact one, and the run is planned for 6 steps");
        SameWeights(Snapshot(student), _weightsAt[6]).Should().BeTrue();
        logger.Warnings.Should().Contain(w => w.Contains("checkpoint-14") && w.Contains("trainer.json"));
        logger.Warnings.Should().Contain(w => w.Contains("checkpoint-12") && w.Contains("manifest.json"));
        logger.Warnings.Should().Contain(w => w.Contains("planned steps"), "MaxSteps 14 -> 6 changes the plan, which is reported");
    }

    [Fact]
    public void Latest_falling_back_then_training_on_reaches_the_uninterrupted_weights_bit_for_bit()
    {
        File.Delete(Path.Combine(CheckpointPath(14), "optimizer.dat"));
        var student = Student(seed: 78, dropout: 0.2);

        TrainingResult result = Trainer(student, _folder.Path, Resume.Latest).Train(_batches);

        result.Steps.Should().Be(Steps);
        SameWeights(Snapshot(student), _weightsAt[14]).Should().BeTrue();
        Checkpoints.Verify(CheckpointPath(14)).IsValid.Should().BeTrue("the damaged checkpoint was written anew");
    }

    [Fact]
    public void Latest_with_every_checkpoint_damaged_is_an_error_listing_each_and_changes_nothing()
    {
        foreach (CheckpointInfo c in Checkpoints.List(_folder.Path)) File.Delete(Path.Combine(c.Path, "student.dat"));
        var student = Student(seed: 79);
        Dictionary<string, Tensor> before = Snapshot(student);

        Action resume = () => Trainer(student, _folder.Path, Resume.Latest).Train(_batches);

        resume.Should().Throw<InvalidDataException>().Which.Message.Should().Contain("checkpoint-6").And.Contain("checkpoint-12").And.Contain("checkpoint-14");
        SameWeights(Snapshot(student), before).Should().BeTrue();
    }

    [Fact]
    public void Latest_in_a_folder_without_checkpoints_starts_a_fresh_run_and_says_so()
    {
        using var empty = new TemporaryFolder();
        var logger = new RecordingLogger();
        var resumed = Student(seed: 5, dropout: 0.2);

        TrainingResult result = Trainer(resumed, empty.Path, Resume.Latest, logger: logger).Train(_batches);

        result.Steps.Should().Be(Steps);
        SameWeights(Snapshot(resumed), _weightsAt[14]).Should().BeTrue("a fresh run with the same seed and initialisation is the uninterrupted run");
        logger.Entries.Should().Contain(e => e.Message.Contains("holds no checkpoint yet"));
    }

    [Fact]
    public void Stale_temporary_folders_of_killed_writes_are_removed_at_the_next_start_and_logged()
    {
        string stale = Path.Combine(_folder.Path, ".checkpoint-20.tmp-0123456789abcdef");
        Directory.CreateDirectory(stale);
        File.WriteAllText(Path.Combine(stale, "student.dat"), "partial");
        var logger = new RecordingLogger();

        Trainer(Student(seed: 80, dropout: 0.2), _folder.Path, Resume.Latest, logger: logger).Train(_batches);

        Directory.Exists(stale).Should().BeFalse();
        logger.Warnings.Should().Contain(w => w.Contains(".checkpoint-20.tmp-0123456789abcdef"));
    }

    [Fact]
    public void A_crash_while_a_checkpoint_of_the_same_step_is_replaced_loses_neither_and_the_next_start_puts_the_old_one_back()
    {
        // Resuming from step 6 passes step 12 again, whose checkpoint exists: the write replaces it. Crash in the middle.
        byte[] before = File.ReadAllBytes(Path.Combine(CheckpointPath(12), "student.dat"));
        CheckpointStore.CrashPoint = (point, step) =>
        {
            if (point == CheckpointWritePoint.PreviousMovedAside && step == 12) throw new SimulatedCrash();
        };
        try
        {
            FluentActions.Invoking(() => Trainer(Student(seed: 81, dropout: 0.2), _folder.Path, CheckpointPath(6)).Train(_batches))
                .Should().Throw<SimulatedCrash>();
        }
        finally
        {
            CheckpointStore.CrashPoint = null;
        }
        Directory.Exists(CheckpointPath(12)).Should().BeFalse("the crash came between setting the old folder aside and renaming the new one in");

        var logger = new RecordingLogger();
        IReadOnlyList<string> handled = Checkpoints.RemoveIncompleteWrites(_folder.Path);

        handled.Should().ContainSingle(p => Path.GetFileName(p).StartsWith(".checkpoint-12.old-", StringComparison.Ordinal));
        Checkpoints.Verify(CheckpointPath(12)).IsValid.Should().BeTrue();
        File.ReadAllBytes(Path.Combine(CheckpointPath(12), "student.dat")).Should().Equal(before);
        Directory.GetDirectories(_folder.Path, ".checkpoint-*").Should().BeEmpty();
        var resumed = Student(seed: 82, dropout: 0.2);
        Trainer(resumed, _folder.Path, CheckpointPath(12), logger: logger).Train(_batches).Steps.Should().Be(Steps);
        SameWeights(Snapshot(resumed), _weightsAt[14]).Should().BeTrue();
    }

    [Fact]
    public void A_checkpoint_of_the_same_step_written_again_replaces_the_old_one_and_leaves_no_set_aside_folder()
    {
        Trainer(Student(seed: 83, dropout: 0.2), _folder.Path, CheckpointPath(6)).Train(_batches).Steps.Should().Be(Steps);

        Checkpoints.List(_folder.Path).Select(c => c.Step).Should().Equal(6, 12, 14);
        Directory.GetDirectories(_folder.Path, ".checkpoint-*").Should().BeEmpty();
        Checkpoints.Verify(CheckpointPath(12)).IsValid.Should().BeTrue();
    }

    private sealed class SimulatedCrash : Exception;

    [Fact]
    public void Resuming_with_different_objective_terms_is_an_error_that_changes_nothing()
    {
        var student = Student(seed: 81, dropout: 0.2);
        Dictionary<string, Tensor> before = Snapshot(student);
        DistillationObjective other = DistillationObjective.Create().SoftTargets(0.7, temperature: 2).ReverseKL(0.3).Build();

        Action resume = () => Trainer(student, _folder.Path, CheckpointPath(14), objective: other).Train(_batches);

        resume.Should().Throw<InvalidOperationException>().Which.Message.Should().Contain("objective terms").And.Contain("hard").And.Contain("reverse_kl");
        SameWeights(Snapshot(student), before).Should().BeTrue();
    }

    [Fact]
    public void Resuming_with_a_different_accumulation_or_model_shape_is_an_error_naming_it()
    {
        Action accumulation = () => Trainer(Student(seed: 82, dropout: 0.2), _folder.Path, CheckpointPath(12), o => o.GradientAccumulationSteps = 4).Train(_batches);
        accumulation.Should().Throw<InvalidOperationException>().Which.Message.Should().Contain("GradientAccumulationSteps was 2").And.Contain("is 4 now");

        manual_seed(83);
        var wider = nn.Sequential(nn.Linear(Features, 24), nn.ReLU(), nn.Dropout(0.2), nn.Linear(24, Classes));
        Action shape = () => Trainer(wider, _folder.Path, CheckpointPath(12)).Train(_batches);
        shape.Should().Throw<InvalidOperationException>().Which.Message.Should().Contain("0.weight").And.Contain("[24, 10]").And.Contain("[16, 10]");
    }

    [Fact]
    public void Resuming_with_a_different_batch_size_is_an_error()
    {
        List<DistillationBatch<Tensor>> smaller = Data(_teacher, 16, 8, 21);

        Action resume = () => Trainer(Student(seed: 84, dropout: 0.2), _folder.Path, CheckpointPath(12), o => o.MaxSteps = 20).Train(smaller);

        resume.Should().Throw<InvalidOperationException>().Which.Message.Should().Contain("16 rows").And.Contain("has 8");
    }

    [Fact]
    public void The_starting_callback_runs_before_the_folder_exists_and_the_finished_one_after()
    {
        using var folder = new TemporaryFolder();
        var events = new List<string>();
        Trainer(Student(seed: 85), folder.Path, null, o => o.MaxSteps = 6).Train(_batches, callbacks: [new Recorder(events)]);

        events.Should().Equal($"starting 6 exists={false}", $"written {Path.Combine(folder.Path, "checkpoint-6")} exists={true}");
    }

    [Fact]
    public void Verify_and_prune_work_on_their_own()
    {
        File.AppendAllText(Path.Combine(CheckpointPath(12), "trainer.json"), " ");
        CheckpointVerification damaged = Checkpoints.Verify(CheckpointPath(12));
        damaged.IsValid.Should().BeFalse();
        damaged.Problem.Should().Contain("trainer.json");

        Checkpoints.Prune(_folder.Path, keep: 1).Select(Path.GetFileName).Should().Equal("checkpoint-6", "checkpoint-12");
        Checkpoints.List(_folder.Path).Select(c => c.Step).Should().Equal(14);
    }

    /// <summary>
    /// 200 random damages — truncations, byte flips and deletions — spread over every file of the newest checkpoint.
    /// Each time: resuming from that checkpoint by path fails with an <see cref="InvalidDataException"/> naming a
    /// file and leaves the student untouched; "latest" falls back to the intact older checkpoint and restores exactly it.
    /// </summary>
    [Fact]
    public void Fuzz_two_hundred_damaged_checkpoints_fall_back_or_fail_cleanly_and_never_change_the_student()
    {
        var random = new Random(2026);
        using var pristine = new TemporaryFolder();
        CopyFolder(CheckpointPath(12), Path.Combine(pristine.Path, "checkpoint-12"));
        CopyFolder(CheckpointPath(14), Path.Combine(pristine.Path, "checkpoint-14"));
        var outcomes = new Dictionary<string, int>();
        for (int trial = 0; trial < 200; trial++)
        {
            using var folder = new TemporaryFolder();
            CopyFolder(Path.Combine(pristine.Path, "checkpoint-12"), Path.Combine(folder.Path, "checkpoint-12"));
            string newest = Path.Combine(folder.Path, "checkpoint-14");
            CopyFolder(Path.Combine(pristine.Path, "checkpoint-14"), newest);
            string file = Files[random.Next(Files.Length)];
            string damage = Damage(Path.Combine(newest, file), random);
            outcomes[damage] = outcomes.GetValueOrDefault(damage) + 1;
            outcomes[file] = outcomes.GetValueOrDefault(file) + 1;

            var student = Student(seed: 1000 + trial, dropout: 0.2);
            Dictionary<string, Tensor> before = Snapshot(student);
            Action byPath = () => Trainer(student, folder.Path, newest).Train(_batches);
            byPath.Should().Throw<InvalidDataException>($"trial {trial}: {damage} {file}").Which.Message.Should().Contain(newest);
            SameWeights(Snapshot(student), before).Should().BeTrue($"trial {trial}: {damage} {file} must not change the student");

            TrainingResult latest = Trainer(student, folder.Path, Resume.Latest, o => o.MaxSteps = 12).Train(_batches);
            latest.Steps.Should().Be(12);
            SameWeights(Snapshot(student), _weightsAt[12]).Should().BeTrue($"trial {trial}: {damage} {file} falls back to checkpoint-12");
        }
        outcomes.Keys.Should().BeEquivalentTo(["truncated", "flipped", "deleted", .. Files]);
        _output.WriteLine(string.Join(", ", outcomes.Select(o => $"{o.Key} {o.Value}")) +
            "; every one refused by path with an InvalidDataException naming the checkpoint, and every one fell back to checkpoint-12 under \"latest\"");
    }

    private static string Damage(string path, Random random)
    {
        byte[] bytes = File.ReadAllBytes(path);
        switch (random.Next(3))
        {
            case 0:
                File.WriteAllBytes(path, bytes[..random.Next(bytes.Length)]);
                return "truncated";
            case 1:
                int flips = 1 + random.Next(8);
                for (int i = 0; i < flips; i++) bytes[random.Next(bytes.Length)] ^= (byte)(1 + random.Next(255));
                File.WriteAllBytes(path, bytes);
                return "flipped";
            default:
                File.Delete(path);
                return "deleted";
        }
    }

    private ObjectAssertionsWrapper ResumeFails(string checkpoint)
    {
        var student = Student(seed: 99, dropout: 0.2);
        Dictionary<string, Tensor> before = Snapshot(student);
        Action resume = () => Trainer(student, _folder.Path, checkpoint).Train(_batches);
        var thrown = resume.Should().Throw<InvalidDataException>();
        SameWeights(Snapshot(student), before).Should().BeTrue("a damaged checkpoint must leave the student exactly as it was");
        return new ObjectAssertionsWrapper(thrown.Which);
    }

    private sealed record ObjectAssertionsWrapper(InvalidDataException Which);

    /// <summary>Recomputes a checkpoint's manifest checksums, as if the files had been written as they now are.</summary>
    private static void Reseal(string checkpoint)
    {
        string manifestPath = Path.Combine(checkpoint, CheckpointManifest.FileName);
        CheckpointManifest manifest = CheckpointManifest.Read(manifestPath);
        var files = CheckpointStore.DataFiles.ToDictionary(f => f, f => CheckpointManifest.Digest(Path.Combine(checkpoint, f)));
        File.WriteAllBytes(manifestPath, (manifest with { Files = files }).Serialize());
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    private sealed class SnapshotAt(nn.Module student, Dictionary<long, Dictionary<string, Tensor>> weights) : IDistillationCallback
    {
        public void OnStepEnd(StepReport report, TrainerControl control) => weights[report.Step] = Snapshot(student);
    }

    private sealed class Recorder(List<string> events) : IDistillationCallback
    {
        public void OnCheckpointStarting(long step, string path) => events.Add($"starting {step} exists={Directory.Exists(path)}");

        public void OnCheckpoint(string path) => events.Add($"written {path} exists={Directory.Exists(path)}");
    }
}
