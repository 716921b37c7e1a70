"""Plain-PyTorch re-implementations of the Hugging Face `transformers` forward passes that KnowledgeDistillation
loads and saves (GPT-2, BERT with its heads, Llama, Qwen2, Mistral), plus readers and writers for the pretrained
folder layout (config.json, safetensors single or sharded, pytorch_model.bin).

Written for this repository from the published architectures and the Hugging Face checkpoint conventions
(parameter names, Conv1D layout, rotate-half RoPE, grouped-query attention, masks of the dtype's minimum). It is the
independent side of the cross-check: nothing here is derived from the C# code. Runs on Debian's python3-torch 1.13
(`/usr/bin/python3`), which has no `transformers` or `safetensors` package.
"""
import json
import math
import os
import struct

import torch

# ---------------------------------------------------------------- safetensors and folders

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
           "F64": torch.float64, "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16}
_NAMES = {v: k for k, v in _DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    """Writes the safetensors format: u64 little-endian header length, a JSON header padded with spaces to a multiple
    of 8, then each tensor's little-endian bytes in header order."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """Returns (tensors, metadata) of a safetensors file, checking that the data offsets tile the data exactly."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None)
    body = data[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1]) for v in header.values())
    position = 0
    for start, end in spans:
        assert start == position, f"{path}: gap or overlap at byte {start} (expected {position})"
        position = end
    assert position == len(body), f"{path}: data is {len(body)} bytes but the header covers {position}"
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        chunk = bytearray(body[start:end])
        if dtype == torch.bfloat16:
            t = torch.frombuffer(chunk, dtype=torch.int16).view(torch.bfloat16) if chunk else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out, metadata


def read_folder(folder):
    """The state dict of a pretrained folder: model.safetensors, a sharded safetensors index, or pytorch_model.bin."""
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)[0]
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            tensors, _ = read_safetensors(os.path.join(folder, shard))
            out.update(tensors)
        assert set(out) == set(weight_map), "the index and the shards disagree"
        return out
    return torch.load(os.path.join(folder, "pytorch_model.bin"), map_location="cpu")


def read_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f)


def strip(state, prefix):
    """Drops a leading prefix (checkpoints name the backbone with or without it)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


# ---------------------------------------------------------------- shared pieces

def lowest(dtype):
    return torch.finfo(dtype).min


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATIONS = {
    "gelu": lambda x: torch.nn.functional.gelu(x),
    "gelu_new": gelu_new,
    "gelu_pytorch_tanh": gelu_new,
    "silu": torch.nn.functional.silu,
}


def padding_mask(attention_mask, dtype):
    """[B, 1, 1, S] additive: 0 for real keys, the dtype's minimum for padded ones."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * lowest(dtype)


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


# ---------------------------------------------------------------- GPT-2 (GPT2LMHeadModel)

def gpt2_forward(cfg, sd, input_ids, attention_mask):
    sd = strip(sd, "transformer.")
    D, H = cfg["n_embd"], cfg["n_head"]
    hd = D // H
    eps = cfg["layer_norm_epsilon"]
    act = ACTIVATIONS[cfg.get("activation_function", "gelu_new")]
    B, S = input_ids.shape
    x = sd["wte.weight"][input_ids] + sd["wpe.weight"][torch.arange(S)][None]
    hidden, attentions = [], []
    causal = torch.tril(torch.ones(S, S, dtype=torch.bool))[None, None]
    extra = padding_mask(attention_mask, x.dtype)
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        hidden.append(x)
        h = layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], eps)
        qkv = h @ sd[p + "attn.c_attn.weight"] + sd[p + "attn.c_attn.bias"]   # Conv1D: [in, out]
        q, k, v = qkv.split(D, dim=2)
        q, k, v = (t.view(B, S, H, hd).permute(0, 2, 1, 3) for t in (q, k, v))
        w = q @ k.transpose(-1, -2) / math.sqrt(hd)
        w = torch.where(causal, w, torch.tensor(lowest(w.dtype)))
        w = w + extra
        w = w.softmax(-1)
        attentions.append(w)
        a = (w @ v).permute(0, 2, 1, 3).reshape(B, S, D)
        a = a @ sd[p + "attn.c_proj.weight"] + sd[p + "attn.c_proj.bias"]
        x = x + a
        h = layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], eps)
        h = act(h @ sd[p + "mlp.c_fc.weight"] + sd[p + "mlp.c_fc.bias"])
        x = x + (h @ sd[p + "mlp.c_proj.weight"] + sd[p + "mlp.c_proj.bias"])
    x = layer_norm(x, sd["ln_f.weight"], sd["ln_f.bias"], eps)
    hidden.append(x)
    head = sd["lm_head.weight"] if not cfg.get("tie_word_embeddings", True) else sd["wte.weight"]
    return x @ head.t(), hidden, attentions


# ---------------------------------------------------------------- BERT and its heads

def bert_encoder(cfg, sd, input_ids, attention_mask, token_type_ids):
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = D // H
    eps = cfg["layer_norm_eps"]
    act = ACTIVATIONS[cfg["hidden_act"]]
    B, S = input_ids.shape
    e = "embeddings."
    x = sd[e + "word_embeddings.weight"][input_ids] + sd[e + "position_embeddings.weight"][torch.arange(S)][None] \
        + sd[e + "token_type_embeddings.weight"][token_type_ids]
    x = layer_norm(x, sd[e + "LayerNorm.weight"], sd[e + "LayerNorm.bias"], eps)
    hidden, attentions = [x], []
    extra = padding_mask(attention_mask, x.dtype)

    def dense(h, name):
        return h @ sd[name + ".weight"].t() + sd[name + ".bias"]

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (dense(x, p + "attention.self." + n).view(B, S, H, hd).permute(0, 2, 1, 3) for n in ("query", "key", "value"))
        w = (q @ k.transpose(-1, -2) / math.sqrt(hd) + extra).softmax(-1)
        attentions.append(w)
        c = (w @ v).permute(0, 2, 1, 3).reshape(B, S, D)
        a = layer_norm(dense(c, p + "attention.output.dense") + x,
                       sd[p + "attention.output.LayerNorm.weight"], sd[p + "attention.output.LayerNorm.bias"], eps)
        h = act(dense(a, p + "intermediate.dense"))
        x = layer_norm(dense(h, p + "output.dense") + a, sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"], eps)
        hidden.append(x)
    return x, hidden, attentions


def bert_forward(cfg, sd, input_ids, attention_mask, token_type_ids):
    """Returns (logits, hidden, attentions): class logits for BertForSequenceClassification, token logits for
    BertForMaskedLM / BertForPreTraining, the last hidden state for BertModel."""
    arch = cfg["architectures"][0]
    body = strip(sd, "bert.")
    x, hidden, attentions = bert_encoder(cfg, body, input_ids, attention_mask, token_type_ids)
    if arch == "BertForSequenceClassification":
        pooled = torch.tanh(x[:, 0] @ body["pooler.dense.weight"].t() + body["pooler.dense.bias"])
        return pooled @ sd["classifier.weight"].t() + sd["classifier.bias"], hidden, attentions
    if arch in ("BertForMaskedLM", "BertForPreTraining"):
        p = "cls.predictions."
        h = ACTIVATIONS[cfg["hidden_act"]](x @ sd[p + "transform.dense.weight"].t() + sd[p + "transform.dense.bias"])
        h = layer_norm(h, sd[p + "transform.LayerNorm.weight"], sd[p + "transform.LayerNorm.bias"], cfg["layer_norm_eps"])
        decoder = sd.get(p + "decoder.weight", body["embeddings.word_embeddings.weight"])
        return h @ decoder.t() + sd[p + "bias"], hidden, attentions
    if arch == "BertModel":
        return x, hidden, attentions
    raise ValueError(arch)


# ---------------------------------------------------------------- Llama, Qwen2, Mistral

def rms_norm(x, w, eps):
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def llama_forward(cfg, sd, input_ids, attention_mask):
    model_type = cfg["model_type"]
    sd = dict(sd)
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or D // H
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    act = ACTIVATIONS[cfg.get("hidden_act", "silu")]
    window = cfg.get("sliding_window") if model_type == "mistral" else None
    B, S = input_ids.shape
    x = sd["model.embed_tokens.weight"][input_ids]

    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    freqs = torch.arange(S).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()

    i = torch.arange(S)[:, None]
    j = torch.arange(S)[None, :]
    allowed = j <= i
    if window is not None:
        allowed = allowed & (j > i - window)
    allowed = allowed[None, None] & attention_mask[:, None, None, :].bool()
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, lowest(torch.float32))

    def proj(h, name, bias_allowed=True):
        out = h @ sd[name + ".weight"].t()
        if name + ".bias" in sd:
            out = out + sd[name + ".bias"]
        return out

    hidden, attentions = [], []
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        hidden.append(x)
        h = rms_norm(x, sd[p + "input_layernorm.weight"], eps)
        q = proj(h, p + "self_attn.q_proj").view(B, S, H, hd).transpose(1, 2)
        k = proj(h, p + "self_attn.k_proj").view(B, S, KV, hd).transpose(1, 2)
        v = proj(h, p + "self_attn.v_proj").view(B, S, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        n_rep = H // KV
        k = k[:, :, None].expand(B, KV, n_rep, S, hd).reshape(B, H, S, hd)
        v = v[:, :, None].expand(B, KV, n_rep, S, hd).reshape(B, H, S, hd)
        w = (q @ k.transpose(2, 3) / math.sqrt(hd) + mask).softmax(-1, dtype=torch.float32).to(q.dtype)
        attentions.append(w)
        a = (w @ v).transpose(1, 2).reshape(B, S, H * hd)
        x = x + proj(a, p + "self_attn.o_proj")
        h = rms_norm(x, sd[p + "post_attention_layernorm.weight"], eps)
        x = x + proj(act(proj(h, p + "mlp.gate_proj")) * proj(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms_norm(x, sd["model.norm.weight"], eps)
    hidden.append(x)
    head = sd["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else sd["lm_head.weight"]
    return x @ head.t(), hidden, attentions


def forward(cfg, sd, input_ids, attention_mask, token_type_ids=None):
    """Dispatches on config.json's model_type; returns (logits, hidden_states, attentions) as transformers would."""
    model_type = cfg["model_type"]
    if model_type == "gpt2":
        return gpt2_forward(cfg, sd, input_ids, attention_mask)
    if model_type == "bert":
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return bert_forward(cfg, sd, input_ids, attention_mask, token_type_ids)
    if model_type in ("llama", "qwen2", "mistral"):
        return llama_forward(cfg, sd, input_ids, attention_mask)
    raise ValueError(f"unsupported model_type {model_type}")
