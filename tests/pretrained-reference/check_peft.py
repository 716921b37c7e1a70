"""The LoRA cross-check: for every <name>-adapter folder KnowledgeDistillation.PretrainedExport wrote in PEFT's layout,
applies the adapter to the <name>-base folder in plain PyTorch, as PEFT defines a LoRA layer (weight + scale * B @ A,
scale = lora_alpha / r or lora_alpha / sqrt(r) with use_rslora, transposed for fan_in_fan_out Conv1D weights; keys
"base_model.model." + module + ".lora_A.weight" / ".lora_B.weight", per PEFT's docs/source/developer_guides/checkpoint.md),
runs hf_reference.py's forward and compares the logits with what the library computed with its adapters; then compares
the library's <name>-merged folder with the PyTorch-merged weights and runs it too. Tolerance 1e-5 (max abs).

Run: /usr/bin/python3 tests/pretrained-reference/check_peft.py <LoRA export folder>    (exit code 1 on any failure)
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

TOLERANCE = 1e-5
PREFIX = "base_model.model."


def max_abs(a, b):
    assert tuple(a.shape) == tuple(b.shape), f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.double() - b.double()).abs().max().item()


def apply_adapter(base, folder):
    with open(os.path.join(folder, "adapter_config.json")) as f:
        config = json.load(f)
    assert config["peft_type"] == "LORA", config["peft_type"]
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    tensors, _ = ref.read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    modules = sorted({k[len(PREFIX):].rsplit(".lora_", 1)[0] for k in tensors})
    assert sorted(config["target_modules"]) == modules, "target_modules and the weights name other modules"
    merged = {k: v.clone() for k, v in base.items()}
    for module in modules:
        a = tensors[f"{PREFIX}{module}.lora_A.weight"]
        b = tensors[f"{PREFIX}{module}.lora_B.weight"]
        assert a.shape[0] == r and b.shape[1] == r, f"{module}: A {tuple(a.shape)}, B {tuple(b.shape)} for r = {r}"
        delta = (b.double() @ a.double()) * scale
        if config.get("fan_in_fan_out"):
            delta = delta.t()
        weight = module + ".weight"
        assert weight in merged, f"{module} is not a module of the base model"
        assert merged[weight].shape == delta.shape, f"{weight} is {tuple(merged[weight].shape)}, the update {tuple(delta.shape)}"
        merged[weight] = (merged[weight].double() + delta).float()
    return merged, len(modules)


def check(root, name):
    problems = []
    base_folder = os.path.join(root, name + "-base")
    cfg = ref.read_config(base_folder)
    base = {k: v.float() for k, v in ref.read_folder(base_folder).items()}
    applied, modules = apply_adapter(base, os.path.join(root, name + "-adapter"))
    expected, _ = ref.read_safetensors(os.path.join(root, name + ".expected.safetensors"))
    gaps = {}
    with torch.no_grad():
        logits, _, _ = ref.forward(cfg, applied, expected["input_ids"], expected["attention_mask"], expected.get("token_type_ids"))
        gaps["adapter applied in PyTorch vs the library's adapted logits"] = max_abs(logits, expected["logits"])
        merged = {k: v.float() for k, v in ref.read_folder(os.path.join(root, name + "-merged")).items()}
        if set(merged) != set(applied):
            problems.append(f"the merged folder holds other tensors: {sorted(set(merged) ^ set(applied))[:3]}")
        else:
            gaps["merged folder vs PyTorch-merged weights"] = max(max_abs(merged[k], applied[k]) for k in applied)
            merged_logits, _, _ = ref.forward(cfg, merged, expected["input_ids"], expected["attention_mask"], expected.get("token_type_ids"))
            gaps["merged folder's logits vs the library's adapted logits"] = max_abs(merged_logits, expected["logits"])
        base_logits, _, _ = ref.forward(cfg, base, expected["input_ids"], expected["attention_mask"], expected.get("token_type_ids"))
        moved = max_abs(base_logits, expected["logits"])
    if moved < 1e-3:
        problems.append(f"the adapters change the logits by only {moved:.2e}: the check would not see a wrong update")
    for what, gap in gaps.items():
        if gap > TOLERANCE:
            problems.append(f"{what} differ by {gap:.3g}")
    return problems, gaps, modules, moved, cfg["architectures"][0]


def main():
    root = sys.argv[1]
    names = sorted(d[:-len("-adapter")] for d in os.listdir(root) if d.endswith("-adapter"))
    if not names:
        print(f"no adapter folders in {root}")
        return 1
    failed = 0
    for name in names:
        problems, gaps, modules, moved, arch = check(root, name)
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        worst = max(gaps.values()) if gaps else float("nan")
        print(f"{name:26s} {arch:30s} {modules:2d} modules; the adapters move the logits by {moved:.2e}; "
              f"max |difference| {worst:.2e}  {status}")
        failed += bool(problems)
    print(f"{len(names) - failed} of {len(names)} PEFT adapter folders match real PyTorch to {TOLERANCE}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
