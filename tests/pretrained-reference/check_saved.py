"""The reverse cross-check: loads every folder KnowledgeDistillation.PretrainedExport saved with SavePretrained, runs
it through hf_reference.py's plain-PyTorch forward, and compares logits, hidden states and attention with what the
library computed (to 1e-4, max abs). Also checks the file conventions transformers relies on: safetensors metadata
{"format": "pt"}, tied weights written once, Hugging Face names only, and a consistent shard index.

Run: /usr/bin/python3 tests/pretrained-reference/check_saved.py <export folder>    (exit code 1 on any failure)
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

TOLERANCE = 1e-4


def max_abs(a, b):
    assert tuple(a.shape) == tuple(b.shape), f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.double() - b.double()).abs().max().item()


def check(folder, expected_path):
    problems = []
    cfg = ref.read_config(folder)
    files = sorted(os.listdir(folder))
    weights = [f for f in files if f.endswith(".safetensors")]
    for w in weights:
        _, metadata = ref.read_safetensors(os.path.join(folder, w))
        if metadata != {"format": "pt"}:
            problems.append(f"{w}: __metadata__ is {metadata}, not {{'format': 'pt'}}")
    if "model.safetensors.index.json" in files:
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            index = json.load(f)
        if set(index["weight_map"].values()) != set(weights):
            problems.append("the index names other shards than the folder holds")
    sd = ref.read_folder(folder)
    tied = cfg.get("tie_word_embeddings", cfg["model_type"] in ("gpt2", "bert"))
    if "lm_head.weight" in sd and tied:
        problems.append("lm_head.weight written although the embeddings are tied")
    if cfg["model_type"] == "bert" and "cls.predictions.decoder.weight" in sd:
        problems.append("the masked-LM decoder written although it is the word embedding matrix")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg["torch_dtype"]]
    wrong = [k for k, v in sd.items() if v.dtype != dtype]
    if wrong:
        problems.append(f"{len(wrong)} tensors are not {cfg['torch_dtype']}, e.g. {wrong[0]}")
    sd = {k: v.float() for k, v in sd.items()}

    expected, _ = ref.read_safetensors(expected_path)
    with torch.no_grad():
        logits, hidden, attentions = ref.forward(cfg, sd, expected["input_ids"], expected["attention_mask"], expected.get("token_type_ids"))
    gaps = {"logits": max_abs(logits, expected["logits"])}
    for i, h in enumerate(hidden):
        gaps[f"hidden_states.{i}"] = max_abs(h, expected[f"hidden_states.{i}"])
    for i, a in enumerate(attentions):
        gaps[f"attentions.{i}"] = max_abs(a, expected[f"attentions.{i}"])
    extra = [k for k in expected if k.startswith(("hidden_states.", "attentions.")) and k not in gaps]
    if extra:
        problems.append(f"the library returned {len(extra)} more hidden states or maps than the reference: {extra}")
    worst = max(gaps, key=gaps.get)
    if gaps[worst] > TOLERANCE:
        problems.append(f"{worst} differs by {gaps[worst]:.3g}")
    return problems, gaps[worst], worst, cfg["architectures"][0]


def main():
    root = sys.argv[1]
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not folders:
        print(f"no saved folders in {root}")
        return 1
    failed = 0
    for name in folders:
        problems, gap, where, arch = check(os.path.join(root, name), os.path.join(root, name + ".expected.safetensors"))
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        print(f"{name:32s} {arch:32s} max |difference| {gap:.2e} ({where})  {status}")
        failed += bool(problems)
    print(f"{len(folders) - failed} of {len(folders)} saved folders match real PyTorch to {TOLERANCE}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
