using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using KnowledgeDistillation.Models;
using KnowledgeDistillation.Remote;
using KnowledgeDistillation.Transformers;
using static TorchSharp.torch;
using static KnowledgeDistillation.Tests.Remote.ServerFixtures;

namespace KnowledgeDistillation.Tests.Remote;

/// <summary>Bad requests against a running server: each answered with a 4xx naming the problem, the server unharmed.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class TeacherServerRequestTests
{
    private const string Key = "server-key-123";

    private static byte[] ValidBody(bool mask = true)
    {
        Tensor ids = tensor(Enumerable.Range(0, 2 * Length).Select(i => (long)(i % Vocabulary)).ToArray()).reshape(2, Length);
        return TeacherWire.EncodeRequest(new TokenBatch(ids, mask ? ones_like(ids) : null));
    }

    private static HttpResponseMessage Post(HttpClient client, Uri server, byte[] body, string? key = Key, string contentType = TeacherWire.RequestContentType)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server, "v1/outputs")) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client.Send(request);
    }

    private static byte[] With(byte[] body, Action<byte[]> change)
    {
        byte[] copy = (byte[])body.Clone();
        change(copy);
        return copy;
    }

    [Fact]
    public async Task Over_a_hundred_bad_requests_each_get_a_4xx_with_a_message_and_the_server_answers_good_ones_after()
    {
        GptModel teacher = Teacher(3);
        var options = Options(key: Key);
        options.MaxRequestBytes = 4096;
        options.MaxSequencesPerRequest = 8;
        options.MaxSequenceLength = 16;
        RunningServer server = RunningServer.Start(teacher, options);
        try
        {
            using var client = new HttpClient();
            byte[] valid = ValidBody();
            var cases = new List<(string Name, Func<HttpResponseMessage> Send, HttpStatusCode Status, string Message)>();
            // Every truncation of a valid body (136 bytes: header, ids, mask).
            for (int length = 0; length < valid.Length; length++)
            {
                int n = length;
                cases.Add(($"first {n} bytes", () => Post(client, server.Url, valid[..n]), HttpStatusCode.BadRequest, n < 16 ? "The body is not a teacher request*" : "A request of 2 × 12 tokens with a mask is 136 bytes; the body has*"));
            }
            cases.Add(("a byte too many", () => Post(client, server.Url, [.. valid, 0]), HttpStatusCode.BadRequest, "*is 136 bytes; the body has 137."));
            cases.Add(("wrong magic", () => Post(client, server.Url, With(valid, b => b[0] = (byte)'X')), HttpStatusCode.BadRequest, "The body is not a teacher request*"));
            cases.Add(("version 2", () => Post(client, server.Url, With(valid, b => b[4] = 2)), HttpStatusCode.BadRequest, "Request version 2; this server reads version 1."));
            cases.Add(("unknown flag", () => Post(client, server.Url, With(valid, b => b[6] = 8)), HttpStatusCode.BadRequest, "Unknown request flags 0x0008*"));
            foreach ((int batch, int length) in new[] { (0, 12), (9, 12), (-1, 12), (int.MaxValue, 12), (2, 0), (2, 17), (2, -5), (2, int.MaxValue) })
            {
                cases.Add(($"{batch} × {length}", () => Post(client, server.Url, With(valid, b =>
                {
                    BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(8), batch);
                    BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(12), length);
                })), HttpStatusCode.BadRequest, batch is < 1 or > 8 ? $"The request holds {batch} sequences; this server takes 1 … 8 per request." : $"The request's sequences are {length} tokens long; this server takes 1 … 16."));
            }
            foreach (int id in new[] { Vocabulary, Vocabulary + 1, -1, int.MinValue, int.MaxValue })
            {
                foreach (int position in new[] { 0, 5, 23 })
                {
                    cases.Add(($"id {id} at {position}", () => Post(client, server.Url, With(valid, b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(16 + 4 * position), id))),
                        HttpStatusCode.BadRequest, $"Token id {id} at sequence {position / Length}, position {position % Length} is outside the teacher's vocabulary [0, {Vocabulary})."));
                }
            }
            foreach (byte maskByte in new byte[] { 2, 255 })
            {
                cases.Add(($"mask byte {maskByte}", () => Post(client, server.Url, With(valid, b => b[16 + 4 * 2 * Length + 3] = maskByte)), HttpStatusCode.BadRequest, $"Mask byte {maskByte} at sequence 0, position 3*"));
            }
            cases.Add(("no key", () => Post(client, server.Url, valid, key: null), HttpStatusCode.Unauthorized, "This server needs an API key*"));
            cases.Add(("wrong key", () => Post(client, server.Url, valid, key: "server-key-124"), HttpStatusCode.Unauthorized, "The API key is wrong."));
            cases.Add(("key of another length", () => Post(client, server.Url, valid, key: "x"), HttpStatusCode.Unauthorized, "The API key is wrong."));
            cases.Add(("description without a key", () =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(server.Url, "v1/teacher"));
                return client.Send(request);
            }, HttpStatusCode.Unauthorized, "This server needs an API key*"));
            cases.Add(("JSON body", () => Post(client, server.Url, Encoding.UTF8.GetBytes("{\"ids\": [1, 2]}"), contentType: "application/json"), HttpStatusCode.UnsupportedMediaType, "Content-Type must be application/vnd.kd.teacher-request; got application/json."));
            cases.Add(("body over the limit", () => Post(client, server.Url, new byte[5000]), HttpStatusCode.RequestEntityTooLarge, "The body is 5000 bytes; this server takes at most 4096."));

            foreach ((string name, Func<HttpResponseMessage> send, HttpStatusCode status, string message) in cases)
            {
                using HttpResponseMessage response = send();
                response.StatusCode.Should().Be(status, name);
                (await response.Content.ReadAsStringAsync()).Should().Match(message, name);
            }
            cases.Count.Should().BeGreaterThanOrEqualTo(100);

            // Connections cut mid-body, and a body that never finishes, do not harm the server.
            for (int i = 0; i < 5; i++)
            {
                using var socket = new TcpClient("127.0.0.1", server.Url.Port);
                byte[] head = Encoding.ASCII.GetBytes($"POST /v1/outputs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {Key}\r\nContent-Type: {TeacherWire.RequestContentType}\r\nContent-Length: 136\r\n\r\n");
                socket.GetStream().Write([.. head, .. valid[..(10 * i + 5)]]);
                socket.Close();
            }

            // Still healthy, and a good request gets the teacher's answer.
            using (HttpResponseMessage health = await client.GetAsync(new Uri(server.Url, "healthz"))) health.StatusCode.Should().Be(HttpStatusCode.OK);
            using (HttpResponseMessage good = Post(client, server.Url, valid))
            {
                good.StatusCode.Should().Be(HttpStatusCode.OK);
                ModelOutput output = TeacherWire.DecodeResponse(await good.Content.ReadAsByteArrayAsync());
                output.TopK!.Indices.shape.Should().Equal(2, Length, 5);
            }
            using JsonDocument metrics = JsonDocument.Parse(await client.GetStringAsync(new Uri(server.Url, "metrics")));
            // A cut connection counts as a client error when its endpoint had started reading the body.
            metrics.RootElement.GetProperty("clientErrors").GetInt64().Should().BeInRange(cases.Count, cases.Count + 5);
            metrics.RootElement.GetProperty("requests").GetInt64().Should().Be(1);
            metrics.RootElement.GetProperty("serverErrors").GetInt64().Should().Be(0);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_client_that_sends_its_body_too_slowly_is_cut_off_while_others_are_answered()
    {
        RunningServer server = RunningServer.Start(Teacher(3), Options());
        try
        {
            byte[] valid = ValidBody();
            using var socket = new TcpClient("127.0.0.1", server.Url.Port);
            NetworkStream stream = socket.GetStream();
            stream.Write(Encoding.ASCII.GetBytes($"POST /v1/outputs HTTP/1.1\r\nHost: x\r\nContent-Type: {TeacherWire.RequestContentType}\r\nContent-Length: {valid.Length}\r\n\r\n"));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            Task<string> answer = Task.Run(async () =>
            {
                using var reader = new StreamReader(stream, Encoding.ASCII, leaveOpen: true);
                try
                {
                    return await reader.ReadToEndAsync();
                }
                catch (IOException)
                {
                    return "";
                }
            });
            // Two bytes a second: the whole body would take over a minute; the server allows 4 KB/s after a 5-second grace.
            for (int i = 0; i < valid.Length && !answer.IsCompleted && clock.Elapsed < TimeSpan.FromSeconds(30); i++)
            {
                try
                {
                    await stream.WriteAsync(valid.AsMemory(i, 1));
                }
                catch (IOException)
                {
                    break;
                }
                await Task.Delay(500);
                if (i == 4)
                {
                    using var client = new HttpClient();
                    using HttpResponseMessage meanwhile = Post(client, server.Url, ValidBody(mask: false), key: null);
                    meanwhile.StatusCode.Should().Be(HttpStatusCode.OK, "a slow client holds no one else up");
                }
            }
            string response = await answer.WaitAsync(TimeSpan.FromSeconds(30));
            clock.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(20), "the slow body is cut off after the grace period, not read to its end");
            if (response.Length > 0) response.Should().StartWith("HTTP/1.1 408");
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task The_server_is_ready_while_it_runs_and_answers_the_requests_in_flight_before_it_stops()
    {
        RunningServer server = RunningServer.Start(Teacher(3), Options());
        using var client = new HttpClient();
        using (HttpResponseMessage ready = await client.GetAsync(new Uri(server.Url, "readyz"))) ready.StatusCode.Should().Be(HttpStatusCode.OK);
        byte[] body = ValidBody(mask: false);
        // Requests in flight when shutdown begins are answered (Kestrel waits for them; the batcher drains its queue).
        Task<HttpResponseMessage>[] inFlight = Enumerable.Range(0, 8).Select(_ => Task.Run(() => Post(client, server.Url, body, key: null))).ToArray();
        HttpResponseMessage[] answers = await Task.WhenAll(inFlight);
        await server.DisposeAsync();
        answers.Should().OnlyContain(a => a.StatusCode == HttpStatusCode.OK);
        Func<Task> after = () => client.GetAsync(new Uri(server.Url, "healthz"));
        await after.Should().ThrowAsync<HttpRequestException>("the server has stopped listening");
    }
}
