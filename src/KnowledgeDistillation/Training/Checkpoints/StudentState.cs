using System.Security.Cryptography;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Training;

/// <summary>
/// What a checkpoint keeps of the student. With every parameter training, all of its state (TorchSharp's own file).
/// With some frozen — a LoRA student, frozen layers — only what trains and the buffers: a 7B base under rank-16
/// adapters would otherwise be rewritten at every checkpoint although it never changes. The frozen part is identified
/// by a digest instead, checked when a run resumes.
/// </summary>
internal static class StudentState
{
    /// <summary>The frozen parameters' names, in state-dict order (empty when everything trains).</summary>
    public static string[] FrozenNames(nn.Module student) =>
        student.named_parameters().Where(p => !p.parameter.requires_grad).Select(p => p.name).ToArray();

    /// <summary>Writes the student's file; returns what the manifest must say about a partial one (null when complete).</summary>
    public static StoredStudentPart? Write(nn.Module student, string path)
    {
        string[] frozen = FrozenNames(student);
        if (frozen.Length == 0)
        {
            student.save(path);
            return null;
        }
        var skip = new HashSet<string>(frozen, StringComparer.Ordinal);
        List<(string Name, Tensor Tensor)> stored = student.state_dict().Where(e => !skip.Contains(e.Key)).Select(e => (e.Key, e.Value)).ToList();
        ModuleStateFile.Write(path, stored);
        return new StoredStudentPart([.. stored.Select(e => e.Name)], FrozenDigest(student, frozen), frozen.Length);
    }

    /// <summary>SHA-256 over each frozen tensor's name, dtype, shape and bytes, in order.</summary>
    public static string FrozenDigest(nn.Module student, IReadOnlyList<string> frozen)
    {
        Dictionary<string, Tensor> state = student.state_dict();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (string name in frozen)
        {
            Tensor tensor = state[name];
            hash.AppendData(Encoding.UTF8.GetBytes($"{name}|{tensor.dtype}|{string.Join(",", tensor.shape)}|"));
            using Tensor bytes = tensor.detach().cpu().contiguous();
            hash.AppendData(bytes.bytes);
        }
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }
}
