using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using KnowledgeDistillation.Caching;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Remote;

/// <summary>
/// The identity of a served teacher: SHA-256 over its weights (every state-dict entry in name order: name, dtype, shape,
/// bytes) or a given identity (an ONNX file's hash), and over the settings its outputs depend on (content, k, T). Two
/// replicas with the same fingerprint give the same outputs for the same request.
/// </summary>
public static class TeacherFingerprint
{
    /// <summary>The fingerprint of a TorchSharp teacher served with these settings.</summary>
    public static string Of(nn.Module module, TeacherCacheContent content, int topK, double temperature)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach ((string name, Tensor value) in module.state_dict().OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{name}|{value.dtype}|{string.Join(",", value.shape)}|"));
            using Tensor bytes = value.detach().cpu().contiguous();
            hash.AppendData(bytes.bytes);
        }
        return Finish(hash, content, topK, temperature);
    }

    /// <summary>The fingerprint of a teacher known by an identity (e.g. the SHA-256 of its ONNX file) served with these settings.</summary>
    public static string Of(string identity, TeacherCacheContent content, int topK, double temperature)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(identity);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"identity|{identity}|"));
        return Finish(hash, content, topK, temperature);
    }

    private static string Finish(IncrementalHash hash, TeacherCacheContent content, int topK, double temperature)
    {
        string settings = content == TeacherCacheContent.TopKProbabilities
            ? $"{content}|{topK}|{temperature.ToString("R", CultureInfo.InvariantCulture)}"
            : content.ToString();
        hash.AppendData(Encoding.UTF8.GetBytes(settings));
        return "sha256:" + Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }
}
