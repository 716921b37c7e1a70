using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Remote;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KnowledgeDistillation.Serving;

/// <summary>
/// The teacher server: its services (<see cref="AddTeacherServer"/>), its endpoints (<see cref="MapTeacherServer"/>), and
/// a ready host (<see cref="Create"/>).
/// <list type="table">
/// <item><term><c>POST /v1/outputs</c></term><description>a <see cref="TeacherWire"/> request → its response (binary), with the <see cref="TeacherWire.FingerprintHeader"/> header</description></item>
/// <item><term><c>GET /v1/teacher</c></term><description>the <see cref="TeacherDescription"/> (JSON)</description></item>
/// <item><term><c>GET /healthz</c></term><description>200 while the process runs (liveness)</description></item>
/// <item><term><c>GET /readyz</c></term><description>200 while the batcher takes requests, 503 before and once shutdown begins (readiness)</description></item>
/// <item><term><c>GET /metrics</c></term><description>the <see cref="TeacherServerSnapshot"/> (JSON)</description></item>
/// </list>
/// Errors are plain text naming what was wrong: 400 malformed or out-of-range, 401 a wrong or missing key, 413 too large,
/// 415 another content type, 503 queue full or stopping, 500 the teacher failed (the server stays up).
/// </summary>
public static class TeacherServer
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() }, WriteIndented = true };

    /// <summary>Registers the served teacher, its batcher (a hosted service) and the metrics.</summary>
    /// <exception cref="ArgumentException">An option is not usable.</exception>
    public static IServiceCollection AddTeacherServer(this IServiceCollection services, IDistillationModel<TokenBatch> teacher, TeacherServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        var served = new ServedTeacher(teacher, options);
        services.AddSingleton(served);
        services.AddSingleton<TeacherServerMetrics>();
        services.AddSingleton<TeacherBatcher>();
        services.AddHostedService(sp => sp.GetRequiredService<TeacherBatcher>());
        return services;
    }

    /// <summary>Maps the server's endpoints.</summary>
    public static IEndpointRouteBuilder MapTeacherServer(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapGet("/healthz", () => Results.Text("ok"));
        endpoints.MapGet("/readyz", (TeacherBatcher batcher) => batcher.Ready ? Results.Text("ready") : Results.Text("not ready", statusCode: 503));
        endpoints.MapGet("/metrics", (TeacherBatcher batcher, TeacherServerMetrics metrics) => Results.Json(metrics.Snapshot(batcher.Queued), Json));
        endpoints.MapGet("/v1/teacher", (HttpContext context, ServedTeacher teacher, TeacherServerMetrics metrics) =>
            Authorized(context, teacher, metrics) ?? Results.Json(teacher.Description, Json));
        endpoints.MapPost("/v1/outputs", Outputs);
        return endpoints;
    }

    /// <summary>
    /// A ready host: Kestrel on <paramref name="urls"/> (e.g. <c>http://0.0.0.0:8080</c>) serving <paramref name="teacher"/>,
    /// with the body limit and slow-client rate of the options. Run it with <c>RunAsync</c>; it stops gracefully on SIGTERM.
    /// </summary>
    public static WebApplication Create(IDistillationModel<TokenBatch> teacher, TeacherServerOptions options, params string[] urls)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls(urls.Length == 0 ? ["http://127.0.0.1:8080"] : urls);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            // A client that sends its body slower than this is cut off (slowloris), after a 5 s grace.
            kestrel.Limits.MinRequestBodyDataRate = new MinDataRate(bytesPerSecond: 4096, gracePeriod: TimeSpan.FromSeconds(5));
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);
        });
        builder.Services.AddTeacherServer(teacher, options);
        WebApplication app = builder.Build();
        app.MapTeacherServer();
        return app;
    }

    private static async Task<IResult> Outputs(HttpContext context, ServedTeacher teacher, TeacherBatcher batcher, TeacherServerMetrics metrics)
    {
        var clock = Stopwatch.StartNew();
        if (Authorized(context, teacher, metrics) is { } refused) return refused;
        HttpRequest request = context.Request;
        if (!string.Equals(request.ContentType, TeacherWire.RequestContentType, StringComparison.OrdinalIgnoreCase))
        {
            return ClientError(metrics, $"Content-Type must be {TeacherWire.RequestContentType}; got {request.ContentType ?? "none"}.", StatusCodes.Status415UnsupportedMediaType);
        }
        long limit = teacher.Options.MaxRequestBytes;
        if (request.ContentLength is { } declared && declared > limit)
        {
            return ClientError(metrics, $"The body is {declared} bytes; this server takes at most {limit}.", StatusCodes.Status413PayloadTooLarge);
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size) size.MaxRequestBodySize = limit;
        byte[] body;
        try
        {
            body = await ReadBody(request, limit, context.RequestAborted);
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e)
        {
            return ClientError(metrics, $"The body could not be read: {e.Message}", e.StatusCode);
        }
        catch (InvalidDataException e)
        {
            return ClientError(metrics, e.Message, StatusCodes.Status413PayloadTooLarge);
        }
        TokenBatch batch;
        try
        {
            batch = TeacherWire.DecodeRequest(body, teacher.Limits);
        }
        catch (InvalidDataException e)
        {
            return ClientError(metrics, e.Message, StatusCodes.Status400BadRequest);
        }
        long sequences = batch.InputIds.shape[0], tokens = batch.InputIds.numel();
        Task<byte[]>? answer = batcher.Enqueue(batch);
        if (answer is null)
        {
            batch.InputIds.Dispose();
            batch.AttentionMask?.Dispose();
            batch.TokenTypeIds?.Dispose();
            metrics.Rejected();
            return Results.Text(batcher.Accepting ? "The queue is full; retry later." : "The server is stopping.", statusCode: StatusCodes.Status503ServiceUnavailable);
        }
        byte[] bytes;
        try
        {
            bytes = await answer;
        }
        catch (Exception e)
        {
            metrics.ServerError();
            return Results.Text($"The teacher failed on this batch: {e.Message}", statusCode: StatusCodes.Status500InternalServerError);
        }
        context.Response.Headers[TeacherWire.FingerprintHeader] = teacher.Description.Fingerprint;
        metrics.Answered(sequences, tokens, clock.Elapsed.TotalMilliseconds);
        return Results.Bytes(bytes, TeacherWire.ResponseContentType);
    }

    private static async Task<byte[]> ReadBody(HttpRequest request, long limit, CancellationToken cancel)
    {
        using var buffer = new MemoryStream(request.ContentLength is { } length ? (int)Math.Min(length, limit) : 4096);
        var chunk = new byte[81920];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancel)) > 0)
        {
            if (buffer.Length + read > limit) throw new InvalidDataException($"The body is over {limit} bytes, this server's limit.");
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private static IResult? Authorized(HttpContext context, ServedTeacher teacher, TeacherServerMetrics metrics)
    {
        if (teacher.Options.ApiKey is not { } key) return null;
        string header = context.Request.Headers.Authorization.ToString();
        byte[] given = Encoding.UTF8.GetBytes(header.StartsWith("Bearer ", StringComparison.Ordinal) ? header[7..] : "");
        if (CryptographicOperations.FixedTimeEquals(given, Encoding.UTF8.GetBytes(key))) return null;
        return ClientError(metrics, header.Length == 0 ? "This server needs an API key: send Authorization: Bearer <key>." : "The API key is wrong.", StatusCodes.Status401Unauthorized);
    }

    private static IResult ClientError(TeacherServerMetrics metrics, string message, int status)
    {
        metrics.ClientError();
        return Results.Text(message, statusCode: status);
    }
}
