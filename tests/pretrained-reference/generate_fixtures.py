"""Writes the pretrained-folder fixtures of tests/KnowledgeDistillation.Tests/Fixtures/Pretrained with real PyTorch.

For each architecture: small random weights in Hugging Face names and layouts (2 layers, width 64, a vocabulary of
256), the folder in three formats (model.safetensors in float32; pytorch_model.bin written by torch.save in
bfloat16; two float16 safetensors shards with model.safetensors.index.json), and expected.safetensors with the
inputs and what hf_reference.py computes from them: logits, every hidden state and every attention map.

Weights are rounded to bfloat16 first, so the three formats hold the same values (float16 holds every bfloat16
value of these magnitudes exactly, but for a few below 6e-5, which move by at most 3e-8).

Run: /usr/bin/python3 tests/pretrained-reference/generate_fixtures.py   (Debian's python3-torch 1.13)
"""
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "KnowledgeDistillation.Tests", "Fixtures", "Pretrained")
V, D, L, FF, CTX = 256, 64, 2, 128, 32


def weights(shapes, generator):
    out = {}
    for name, shape in shapes.items():
        if name.endswith(("LayerNorm.weight", "layernorm.weight", "ln_1.weight", "ln_2.weight", "ln_f.weight", "norm.weight")):
            t = 1 + 0.1 * torch.randn(shape, generator=generator)
        elif name.endswith(("bias", "LayerNorm.bias")):
            t = 0.05 * torch.randn(shape, generator=generator)
        else:
            t = 0.1 * torch.randn(shape, generator=generator)
        out[name] = t.to(torch.bfloat16).to(torch.float32)
    return out


def gpt2():
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": CTX, "n_embd": D,
           "n_layer": L, "n_head": 4, "n_inner": FF, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
           "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "tie_word_embeddings": True,
           "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float32"}
    s = {"transformer.wte.weight": (V, D), "transformer.wpe.weight": (CTX, D)}
    for i in range(L):
        p = f"transformer.h.{i}."
        s.update({p + "ln_1.weight": (D,), p + "ln_1.bias": (D,), p + "attn.c_attn.weight": (D, 3 * D), p + "attn.c_attn.bias": (3 * D,),
                  p + "attn.c_proj.weight": (D, D), p + "attn.c_proj.bias": (D,), p + "ln_2.weight": (D,), p + "ln_2.bias": (D,),
                  p + "mlp.c_fc.weight": (D, FF), p + "mlp.c_fc.bias": (FF,), p + "mlp.c_proj.weight": (FF, D), p + "mlp.c_proj.bias": (D,)})
    s.update({"transformer.ln_f.weight": (D,), "transformer.ln_f.bias": (D,)})
    return cfg, s


def bert(architecture):
    cfg = {"architectures": [architecture], "model_type": "bert", "vocab_size": V, "hidden_size": D, "num_hidden_layers": L,
           "num_attention_heads": 4, "intermediate_size": FF, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
           "attention_probs_dropout_prob": 0.1, "max_position_embeddings": CTX, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
           "position_embedding_type": "absolute", "pad_token_id": 0, "torch_dtype": "float32"}
    prefix = "" if architecture == "BertModel" else "bert."
    e = prefix + "embeddings."
    s = {e + "word_embeddings.weight": (V, D), e + "position_embeddings.weight": (CTX, D), e + "token_type_embeddings.weight": (2, D),
         e + "LayerNorm.weight": (D,), e + "LayerNorm.bias": (D,)}
    for i in range(L):
        p = f"{prefix}encoder.layer.{i}."
        for n in ("query", "key", "value"):
            s[p + f"attention.self.{n}.weight"] = (D, D)
            s[p + f"attention.self.{n}.bias"] = (D,)
        s.update({p + "attention.output.dense.weight": (D, D), p + "attention.output.dense.bias": (D,),
                  p + "attention.output.LayerNorm.weight": (D,), p + "attention.output.LayerNorm.bias": (D,),
                  p + "intermediate.dense.weight": (FF, D), p + "intermediate.dense.bias": (FF,),
                  p + "output.dense.weight": (D, FF), p + "output.dense.bias": (D,),
                  p + "output.LayerNorm.weight": (D,), p + "output.LayerNorm.bias": (D,)})
    if architecture in ("BertModel", "BertForSequenceClassification", "BertForPreTraining"):
        s.update({prefix + "pooler.dense.weight": (D, D), prefix + "pooler.dense.bias": (D,)})
    if architecture == "BertForSequenceClassification":
        cfg["id2label"] = {"0": "negative", "1": "neutral", "2": "positive"}
        cfg["label2id"] = {"negative": 0, "neutral": 1, "positive": 2}
        s.update({"classifier.weight": (3, D), "classifier.bias": (3,)})
    if architecture in ("BertForMaskedLM", "BertForPreTraining"):
        p = "cls.predictions."
        s.update({p + "transform.dense.weight": (D, D), p + "transform.dense.bias": (D,), p + "transform.LayerNorm.weight": (D,),
                  p + "transform.LayerNorm.bias": (D,), p + "bias": (V,)})
    if architecture == "BertForPreTraining":
        s.update({"cls.seq_relationship.weight": (2, D), "cls.seq_relationship.bias": (2,)})
    return cfg, s


def llama(model_type):
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}[model_type]
    H, KV = 4, 2
    hd = D // H
    cfg = {"architectures": [arch], "model_type": model_type, "vocab_size": V, "hidden_size": D, "intermediate_size": FF,
           "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV, "hidden_act": "silu",
           "max_position_embeddings": CTX, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_dropout": 0.0,
           "tie_word_embeddings": model_type == "qwen2", "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    if model_type == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False, "rope_scaling": None, "pretraining_tp": 1})
    if model_type == "qwen2":
        cfg.update({"rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": None, "max_window_layers": L})
    if model_type == "mistral":
        cfg.update({"sliding_window": 4, "rope_theta": 100000.0})
    s = {"model.embed_tokens.weight": (V, D)}
    for i in range(L):
        p = f"model.layers.{i}."
        s.update({p + "input_layernorm.weight": (D,), p + "self_attn.q_proj.weight": (H * hd, D), p + "self_attn.k_proj.weight": (KV * hd, D),
                  p + "self_attn.v_proj.weight": (KV * hd, D), p + "self_attn.o_proj.weight": (D, H * hd),
                  p + "post_attention_layernorm.weight": (D,), p + "mlp.gate_proj.weight": (FF, D), p + "mlp.up_proj.weight": (FF, D),
                  p + "mlp.down_proj.weight": (D, FF)})
        if model_type == "qwen2":
            s.update({p + "self_attn.q_proj.bias": (H * hd,), p + "self_attn.k_proj.bias": (KV * hd,), p + "self_attn.v_proj.bias": (KV * hd,)})
    s["model.norm.weight"] = (D,)
    if not cfg["tie_word_embeddings"]:
        s["lm_head.weight"] = (V, D)
    return cfg, s


def write_config(folder, cfg, dtype):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(dict(cfg, torch_dtype=dtype), f, indent=2, sort_keys=True)


def write_sharded(folder, sd, dtype):
    names = sorted(sd)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map, total = {}, 0
    for n, part in enumerate(halves, start=1):
        shard = f"model-{n:05d}-of-{len(halves):05d}.safetensors"
        tensors = {k: sd[k].to(dtype) for k in part}
        ref.write_safetensors(os.path.join(folder, shard), tensors, {"format": "pt"})
        for k in part:
            weight_map[k] = shard
            total += tensors[k].numel() * tensors[k].element_size()
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def legacy_gpt2_bin(sd):
    """The layout of the original GPT-2 checkpoints: no "transformer." prefix, and the causal-mask buffers saved."""
    out = ref.strip(sd, "transformer.")
    for i in range(L):
        out[f"h.{i}.attn.bias"] = torch.tril(torch.ones(CTX, CTX, dtype=torch.bfloat16)).view(1, 1, CTX, CTX)
        out[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4, dtype=torch.bfloat16)
    return out


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    generator = torch.Generator().manual_seed(20261128)
    input_ids = torch.randint(3, V, (2, 7), generator=generator)
    attention_mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    token_type_ids = torch.tensor([[0] * 4 + [1] * 3, [0] * 3 + [1] * 2 + [0] * 2])
    specs = {"gpt2": gpt2(), "bert-classification": bert("BertForSequenceClassification"), "bert-masked-lm": bert("BertForMaskedLM"),
             "bert-pretraining": bert("BertForPreTraining"), "bert-encoder": bert("BertModel"),
             "llama": llama("llama"), "qwen2": llama("qwen2"), "mistral": llama("mistral")}
    full_formats = {"gpt2", "bert-classification", "llama", "qwen2", "mistral"}
    for name, (cfg, shapes) in specs.items():
        sd = weights(shapes, generator)
        with torch.no_grad():
            logits, hidden, attentions = ref.forward(cfg, sd, input_ids, attention_mask, token_type_ids)
        folder = os.path.join(ROOT, name)
        write_config(folder, cfg, "float32")
        ref.write_safetensors(os.path.join(folder, "model.safetensors"), sd, {"format": "pt"})
        expected = {"input_ids": input_ids, "attention_mask": attention_mask, "logits": logits}
        if cfg["model_type"] == "bert":
            expected["token_type_ids"] = token_type_ids
        expected.update({f"hidden_states.{i}": h for i, h in enumerate(hidden)})
        expected.update({f"attentions.{i}": a for i, a in enumerate(attentions)})
        ref.write_safetensors(os.path.join(folder, "expected.safetensors"), expected)
        if name in full_formats:
            write_config(folder + "-bin", cfg, "bfloat16")
            bin_sd = legacy_gpt2_bin(sd) if name == "gpt2" else sd
            torch.save({k: v.to(torch.bfloat16) for k, v in bin_sd.items()}, os.path.join(folder + "-bin", "pytorch_model.bin"))
            write_config(folder + "-sharded", cfg, "float16")
            write_sharded(folder + "-sharded", sd, torch.float16)
        print(f"{name}: logits {tuple(logits.shape)}, {len(hidden)} hidden states, {len(attentions)} attention maps")


if __name__ == "__main__":
    main()
