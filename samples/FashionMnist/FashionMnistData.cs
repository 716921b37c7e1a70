using System.IO.Compression;
using static TorchSharp.torch;

namespace FashionMnist;

/// <summary>Fashion-MNIST from its IDX files (gzipped or not), standardised with the training set's mean and deviation unless asked for raw pixels.</summary>
internal sealed record FashionMnistData(Tensor TrainImages, Tensor TrainLabels, Tensor TestImages, Tensor TestLabels)
{
    public const string DebianFolder = "/usr/share/datasets/fashion-mnist";

    /// <param name="folder">The folder with the four IDX files.</param>
    /// <param name="standardize">Standardise the pixels; false keeps them in [0, 1] (for a teacher with its own preprocessing).</param>
    public static FashionMnistData Load(string folder, bool standardize = true)
    {
        Tensor trainImages = Images(Find(folder, "train-images-idx3-ubyte")), testImages = Images(Find(folder, "t10k-images-idx3-ubyte"));
        if (!standardize)
        {
            return new FashionMnistData(trainImages, Labels(Find(folder, "train-labels-idx1-ubyte")), testImages, Labels(Find(folder, "t10k-labels-idx1-ubyte")));
        }
        float mean = trainImages.mean().item<float>(), deviation = trainImages.std().item<float>();
        return new FashionMnistData(
            ((trainImages - mean) / deviation).DetachFromDisposeScope(), Labels(Find(folder, "train-labels-idx1-ubyte")),
            ((testImages - mean) / deviation).DetachFromDisposeScope(), Labels(Find(folder, "t10k-labels-idx1-ubyte")));
    }

    private static string Find(string folder, string name)
    {
        foreach (string candidate in new[] { name, name + ".gz" }.Select(n => Path.Combine(folder, n)))
        {
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException(
            $"Fashion-MNIST is not in {folder} ({name}[.gz] is missing). On Debian or Ubuntu: sudo apt-get install dataset-fashion-mnist " +
            $"(installs it in {DebianFolder}); elsewhere, download the four IDX files and pass their folder with --data.");
    }

    private static byte[] Read(string path)
    {
        using Stream file = File.OpenRead(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.Ordinal) ? new GZipStream(file, CompressionMode.Decompress) : file;
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return memory.ToArray();
    }

    private static int BigEndian(byte[] b, int at) => b[at] << 24 | b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3];

    private static Tensor Images(string path)
    {
        byte[] b = Read(path);
        if (BigEndian(b, 0) != 0x803) throw new InvalidDataException($"{path} is not an IDX image file.");
        int count = BigEndian(b, 4), rows = BigEndian(b, 8), cols = BigEndian(b, 12);
        return tensor(b[16..], [count, 1, rows, cols]).to(ScalarType.Float32).div(255).DetachFromDisposeScope();
    }

    private static Tensor Labels(string path)
    {
        byte[] b = Read(path);
        if (BigEndian(b, 0) != 0x801) throw new InvalidDataException($"{path} is not an IDX label file.");
        return tensor(b[8..]).to(ScalarType.Int64).DetachFromDisposeScope();
    }
}
