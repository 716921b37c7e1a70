using Onnx;
var m = ModelProto.Parser.ParseFrom(File.ReadAllBytes("bin/Debug/net10.0/DnnImageModels/ResNetPrepOnnx/ResNetPreprocess.onnx"));
foreach (var n in m.Graph.Node) Console.WriteLine($"{n.OpType} {string.Join(",", n.Input)} -> {string.Join(",", n.Output)}");
foreach (var t in m.Graph.Initializer) Console.WriteLine($"init {t.Name} [{string.Join(",", t.Dims)}] {string.Join(",", t.FloatData.Take(6))} raw {t.RawData.Length}");
var r = ModelProto.Parser.ParseFrom(File.ReadAllBytes("bin/Debug/net10.0/DnnImageModels/ResNet18Onnx/ResNet18.onnx"));
Console.WriteLine($"resnet nodes {r.Graph.Node.Count} opset {string.Join(",", r.OpsetImport.Select(o=>o.Version))} first {r.Graph.Node[0].OpType} {r.Graph.Node[1].OpType}");
foreach (var n in r.Graph.Node.Where(n => n.OpType=="Reshape")) Console.WriteLine($"reshape {string.Join(",", n.Input)}");
