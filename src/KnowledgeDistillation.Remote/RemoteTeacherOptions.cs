namespace KnowledgeDistillation.Remote;

/// <summary>Where a <see cref="RemoteTeacher{TInput}"/> reads its teacher server and how it rides out failures.</summary>
public sealed class RemoteTeacherOptions : TeacherConnectionOptions
{
    /// <summary>When set, the fingerprint every replica must serve (<see cref="TeacherFingerprint"/>); otherwise the first replica's.</summary>
    public string? ExpectedFingerprint { get; set; }
}
