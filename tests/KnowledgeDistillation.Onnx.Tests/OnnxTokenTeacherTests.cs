using KnowledgeDistillation.Models;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace KnowledgeDistillation.Onnx.Tests;

/// <summary>
/// <see cref="OnnxTeacher"/> fed a <see cref="TokenBatch"/>: the real encoders' three int64 inputs, pooled and
/// normalised sentence embeddings (checked against double-precision loops over ONNX Runtime's own output), and the
/// library's GPT and BERT exports as teachers.
/// </summary>
public class OnnxTokenTeacherTests(RealTextEncoders encoders) : IClassFixture<RealTextEncoders>
{
    [Theory]
    [InlineData("MiniLM", SequencePooling.Mean)]
    [InlineData("ArcticXs", SequencePooling.Cls)]
    [InlineData("MiniLM", SequencePooling.LastToken)]
    public void Pooled_normalised_embeddings_equal_a_double_precision_pooling_of_ONNX_Runtimes_hidden_states(string name, SequencePooling pooling)
    {
        string model = Path.Combine(encoders.Folder(name), "model.onnx");
        (long[,] ids, long[,] mask) = RealTextEncoders.Batch(encoders.Folder(name), RealTextEncoders.Sentences);
        int rows = ids.GetLength(0), length = ids.GetLength(1);
        float[] hidden = RealTextEncoders.LastHiddenState(model, ids, mask);

        using var teacher = new OnnxTeacher(model, new OnnxTeacherOptions { LogitsOutput = "last_hidden_state", Pooling = pooling, Normalize = true, BatchSize = 3 });
        teacher.TakesTokens.Should().BeTrue();
        teacher.InputNames.Should().Equal("input_ids", "attention_mask", "token_type_ids");
        using var scope = NewDisposeScope();
        var batch = new TokenBatch(tensor(ids.Cast<long>().ToArray(), [rows, length]), tensor(mask.Cast<long>().ToArray(), [rows, length]));
        using ModelOutput output = teacher.Run(batch, OutputRequest.LogitsOnly);
        output.Logits.shape.Should().Equal(rows, 384);
        float[] got = output.Logits.contiguous().data<float>().ToArray();

        for (int r = 0; r < rows; r++)
        {
            int real = Enumerable.Range(0, length).Count(j => mask[r, j] == 1);
            var pooled = new double[384];
            for (int h = 0; h < 384; h++)
            {
                double Value(int j) => hidden[((r * length) + j) * 384 + h];
                pooled[h] = pooling switch
                {
                    SequencePooling.Mean => Enumerable.Range(0, real).Sum(Value) / real,
                    SequencePooling.Cls => Value(0),
                    _ => Value(real - 1),
                };
            }
            double norm = Math.Sqrt(pooled.Sum(v => v * v));
            for (int h = 0; h < 384; h++) got[r * 384 + h].Should().BeApproximately((float)(pooled[h] / norm), 1e-5f, $"row {r}, feature {h}");
        }
    }

    [Fact]
    public void Mean_pooled_MiniLM_ranks_a_paraphrase_above_an_unrelated_sentence()
    {
        // A property of the real pretrained model, not of this code: it only holds if ids, mask and pooling are right.
        string folder = encoders.MiniLM;
        string[] texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply on Monday."];
        (long[,] ids, long[,] mask) = RealTextEncoders.Batch(folder, texts);
        using var teacher = new OnnxTeacher(Path.Combine(folder, "model.onnx"), new OnnxTeacherOptions { Pooling = SequencePooling.Mean, Normalize = true });
        using var scope = NewDisposeScope();
        int rows = ids.GetLength(0), length = ids.GetLength(1);
        Tensor e = teacher.Run(new TokenBatch(tensor(ids.Cast<long>().ToArray(), [rows, length]), tensor(mask.Cast<long>().ToArray(), [rows, length])), OutputRequest.LogitsOnly).Logits;
        Tensor cosine = e.matmul(e.t());
        float paraphrase = cosine[0, 1].item<float>(), unrelated = cosine[0, 2].item<float>();
        paraphrase.Should().BeGreaterThan(0.5f);
        unrelated.Should().BeLessThan(0.2f);
    }

    [Fact]
    public void The_librarys_BERT_export_is_a_teacher_with_its_hidden_states_and_the_batchs_padding()
    {
        manual_seed(21);
        using var model = new BertModel(new BertConfig { VocabSize = 50, ContextLength = 16, Width = 32, Heads = 4, Layers = 2, Head = BertHead.None, Dropout = 0 });
        model.eval();
        string path = Path.Combine(Path.GetTempPath(), $"kd-bert-teacher-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(model, path, hiddenStates: true);
            using var teacher = new OnnxTeacher(path, new OnnxTeacherOptions { HiddenStateOutputs = ["hidden.1", "hidden.2"], BatchSize = 2 });
            using var scope = NewDisposeScope();
            Tensor ids = randint(1, 50, [5, 9], dtype: ScalarType.Int64);
            Tensor mask = ones(5, 9, dtype: ScalarType.Int64);
            mask[1, TensorIndex.Slice(4)] = tensor(0L);
            mask[3, TensorIndex.Slice(7)] = tensor(0L);
            Tensor types = zeros(5, 9, dtype: ScalarType.Int64);
            types[0, TensorIndex.Slice(5)] = tensor(1L);
            var batch = new TokenBatch(ids, mask, types);
            using ModelOutput fromOnnx = teacher.Run(batch, new OutputRequest(HiddenStates: true));
            using ModelOutput fromTorch = model.Run(batch, new OutputRequest(HiddenStates: true));
            (fromOnnx.Logits - fromTorch.Logits).abs().max().item<float>().Should().BeLessThan(1e-4f);
            (fromOnnx.HiddenStates![1] - fromTorch.HiddenStates![2]).abs().max().item<float>().Should().BeLessThan(1e-4f);
            // Without a mask or token types, the teacher fills ones and zeros: the same as passing them.
            using ModelOutput filled = teacher.Run(new TokenBatch(ids), OutputRequest.LogitsOnly);
            using ModelOutput explicitOnes = model.Run(new TokenBatch(ids, ones_like(ids), zeros_like(ids)), OutputRequest.LogitsOnly);
            (filled.Logits - explicitOnes.Logits).abs().max().item<float>().Should().BeLessThan(1e-4f);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void The_librarys_GPT_export_takes_ids_alone_and_its_last_token_pooling_reads_each_rows_last_real_token()
    {
        manual_seed(22);
        using var model = new GptModel(new GptConfig { VocabSize = 30, ContextLength = 12, Width = 16, Heads = 2, Layers = 1, Dropout = 0 });
        model.eval();
        string path = Path.Combine(Path.GetTempPath(), $"kd-gpt-teacher-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(model, path);
            using var teacher = new OnnxTeacher(path, new OnnxTeacherOptions { Pooling = SequencePooling.LastToken });
            teacher.InputNames.Should().Equal("input_ids");
            using var scope = NewDisposeScope();
            Tensor ids = randint(0, 30, [3, 7], dtype: ScalarType.Int64);
            Tensor mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0 }, [3, 7]);
            using ModelOutput pooled = teacher.Run(new TokenBatch(ids, mask), OutputRequest.LogitsOnly);
            Tensor logits;
            using (no_grad()) logits = model.call(ids);
            pooled.Logits.shape.Should().Equal(3, 30);
            int[] last = [6, 1, 4];
            for (int r = 0; r < 3; r++) (pooled.Logits[r] - logits[r, last[r]]).abs().max().item<float>().Should().BeLessThan(1e-4f);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void The_librarys_Llama_export_is_a_teacher_with_its_logits_and_every_layers_hidden_state()
    {
        manual_seed(23);
        using var model = new LlamaModel(new LlamaConfig { VocabSize = 40, ContextLength = 16, Width = 32, Heads = 4, KeyValueHeads = 2, Layers = 2, FeedForwardWidth = 64 });
        model.eval();
        string path = Path.Combine(Path.GetTempPath(), $"kd-llama-teacher-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExport.Export(model, path, hiddenStates: true);
            using var teacher = new OnnxTeacher(path, new OnnxTeacherOptions { LogitsOutput = "logits", HiddenStateOutputs = ["hidden.0", "hidden.1", "hidden.2"] });
            teacher.InputNames.Should().Equal("input_ids");
            using var scope = NewDisposeScope();
            Tensor ids = randint(0, 40, [2, 9], dtype: ScalarType.Int64);
            using ModelOutput served = teacher.Run(new TokenBatch(ids), new OutputRequest(HiddenStates: true));
            using ModelOutput expected = model.Run(new TokenBatch(ids), new OutputRequest(HiddenStates: true));
            (served.Logits - expected.Logits).abs().max().item<float>().Should().BeLessThan(1e-4f);
            served.HiddenStates!.Count.Should().Be(3);
            for (int i = 0; i < 3; i++) (served.HiddenStates[i] - expected.HiddenStates![i]).abs().max().item<float>().Should().BeLessThan(1e-4f, $"hidden state {i}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Feeding_the_wrong_kind_of_input_or_a_misshapen_batch_is_refused()
    {
        using var teacher = new OnnxTeacher(Path.Combine(encoders.MiniLM, "model.onnx"));
        ((Action)(() => teacher.Run(zeros(2, 8), OutputRequest.LogitsOnly))).Should().Throw<NotSupportedException>().WithMessage("*input_ids*TokenBatch*");
        Tensor ids = ones(2, 8, dtype: ScalarType.Int64);
        ((Action)(() => teacher.Run(new TokenBatch(ids, ones(2, 7, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly)))
            .Should().Throw<ArgumentException>().WithMessage("*AttentionMask*[2, 8]*[2, 7]*");
        ((Action)(() => teacher.Run(new TokenBatch(ones(8, dtype: ScalarType.Int64)), OutputRequest.LogitsOnly)))
            .Should().Throw<ArgumentException>().WithMessage("*InputIds must be [N, S]*");
        ((Action)(() => new OnnxTeacher(Path.Combine(encoders.MiniLM, "model.onnx"), new OnnxTeacherOptions { TokenInputs = new OnnxTokenInputs { InputIds = "ids" } })))
            .Should().Throw<ArgumentException>().WithMessage("*3 inputs (input_ids, attention_mask, token_type_ids)*\"ids\"*");
    }
}
