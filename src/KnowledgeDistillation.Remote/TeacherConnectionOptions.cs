namespace KnowledgeDistillation.Remote;

/// <summary>Where a teacher read over HTTP lives and how its client rides out failures; shared by every remote teacher.</summary>
public class TeacherConnectionOptions
{
    /// <summary>The base URLs of the server's replicas (e.g. <c>http://teacher-0:8080/</c>); requests go round-robin.</summary>
    public IList<Uri> Endpoints { get; set; } = [];

    /// <summary>The server's API key, sent as <c>Authorization: Bearer …</c>; null when the server has none.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The longest one attempt may take before it is abandoned and retried on the next replica (default 60 s).</summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Attempts after the first before a batch fails (default 8); each goes to the next replica.</summary>
    public int MaxRetries { get; set; } = 8;

    /// <summary>The wait before the first retry, doubled after each (default 100 ms, with jitter).</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option that is not usable, its rule and its value.</summary>
    public virtual void Validate()
    {
        if (Endpoints is null || Endpoints.Count == 0) throw new ArgumentException("Endpoints must list at least one server URL; got none.", nameof(Endpoints));
        foreach (Uri endpoint in Endpoints)
        {
            if (endpoint is null || !endpoint.IsAbsoluteUri || endpoint.Scheme is not ("http" or "https"))
            {
                throw new ArgumentException($"Endpoints must be absolute http or https URLs; got \"{endpoint}\".", nameof(Endpoints));
            }
        }
        if (AttemptTimeout <= TimeSpan.Zero) throw new ArgumentException($"AttemptTimeout must be greater than 0; got {AttemptTimeout}.", nameof(AttemptTimeout));
        if (MaxRetries is < 0 or > 100) throw new ArgumentException($"MaxRetries must be 0 … 100; got {MaxRetries}.", nameof(MaxRetries));
        if (RetryDelay < TimeSpan.Zero) throw new ArgumentException($"RetryDelay cannot be negative; got {RetryDelay}.", nameof(RetryDelay));
    }
}
