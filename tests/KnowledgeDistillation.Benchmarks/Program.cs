// Performance measurements for docs/performance.md.
//   dotnet run -c Release --project tests/KnowledgeDistillation.Benchmarks -- --filter '*'          BenchmarkDotNet timings
//   dotnet run -c Release --project tests/KnowledgeDistillation.Benchmarks -- measure <name>        one-shot measurements:
//       loss-memory | fused-head-memory [--quick] | step-memory | steady-memory [--hand-written] | throughput | teacher-cache [--quick]
//       | step-overhead [pairs] | tokenizer-speed <corpus.json> <name>=<tokenizer.json>...
//       | teacher-server-load [seconds] [clients,...] | remote-teacher-step in-process|remote|compare [tiny-gpt|minilm] (run from the repository root)
//       | memory-plan (MemoryPlan.Estimate against measured peaks, with and without LoRA and activation checkpointing)
//       | memory-phases <configuration> [time] (peak and live memory after each phase of a step, for a memory-plan configuration)
using BenchmarkDotNet.Running;
using KnowledgeDistillation.Benchmarks.Measurements;

if (args is ["measure", string name, ..])
{
    return name switch
    {
        "loss-memory" => LossMemory.Run(),
        "fused-head-memory" => FusedHeadMemory.Run(args.Length > 2 && args[2] == "--quick"),
        "steady-memory" => SteadyStateMemory.Run(handWritten: args.Length > 2 && args[2] == "--hand-written"),
        "step-memory" => StepMemory.Run(),
        "throughput" => Throughput.Run(),
        "teacher-cache" => TeacherCacheExperiment.Run(args.Length > 2 && args[2] == "--quick"),
        "tokenizer-speed" when args.Length > 3 => TokenizerSpeed.Run(args[2], args[3..]),
        "teacher-server-load" => TeacherServerLoad.Run(HostDll(), args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 10,
            args.Length > 3 ? args[3].Split(',').Select(c => int.Parse(c, System.Globalization.CultureInfo.InvariantCulture)).ToArray() : [1, 4, 16]),
        "remote-teacher-step" when args.Length > 2 => RemoteTeacherStep.Run(HostDll(), args[2], args.Length > 3 ? args[3] : "tiny-gpt"),
        "memory-plan" => MemoryPlanCheck.Run(args.Length > 2 ? args[2] : null),
        "memory-phases" when args.Length > 2 => MemoryPhases.Run(args[2], timeOnly: args.Length > 3 && args[3] == "time"),
        "step-overhead" => StepOverhead.Run(args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 400),
        _ => Unknown(name),
    };
}
BenchmarkSwitcher.FromAssembly(typeof(LossMemory).Assembly).Run(args);
return 0;

// The host the server measurements start, built next to this project in the same configuration.
static string HostDll() => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../samples/TeacherServer/bin/Release/net10.0/kd-teacher-server.dll"));

static int Unknown(string name)
{
    Console.Error.WriteLine($"Unknown measurement '{name}'; expected loss-memory, fused-head-memory, step-memory, steady-memory, throughput, teacher-cache, step-overhead, tokenizer-speed <corpus.json> <name>=<tokenizer.json>..., teacher-server-load or remote-teacher-step in-process|remote|compare [tiny-gpt|minilm] or memory-plan.");
    return 1;
}
