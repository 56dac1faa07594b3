#!/usr/bin/python3
"""Independent float64 reference for HF Llama/Mistral/Qwen2 + PEFT LoRA (forward, loss, LoRA grads).

What it is
    A small, self-contained PyTorch implementation of the Hugging Face Llama
    forward pass (RMSNorm, rotate-half RoPE incl. llama3/linear scaling, causal
    GQA attention, SwiGLU MLP, optional biases, tied or untied lm_head) with PEFT
    LoRA adapters on the attention/MLP projections. Everything is computed in
    torch.float64 and the LoRA gradients come from autograd. It is written from
    the formulas, not from transformers/peft, so it can serve as an independent
    oracle for the C++ engine.

    Architectures (config.json "model_type"), as HF's config classes define them:
      llama    biases on q/k/v/o per "attention_bias", on the MLP per "mlp_bias".
      mistral  no biases; every layer attends through "sliding_window" W
               (absent: 4096, MistralConfig's default; null: full attention).
      qwen2    biases on q/k/v only; windows only with "use_sliding_window", on
               the layers "layer_types" marks "sliding_attention" (default: the
               layers at or above "max_window_layers", default 28).
    A sliding window W lets the query at position i see key j iff
    i - W < j <= i (transformers' masking_utils: causal mask and
    sliding_window_overlay).

How the test suite uses it
    The C++ tests write a model directory, an adapter directory and a batch,
    run this script, and compare the engine's logits, loss and LoRA gradients
    against the tensors written to OUT:

        /usr/bin/python3 tests/reference/llama_reference.py \
            --model MODEL_DIR --adapter ADAPTER_DIR \
            --batch BATCH.safetensors --out OUT.safetensors

    MODEL_DIR   HF layout: config.json + model.safetensors, or shards listed in
                model.safetensors.index.json. Weights F32/BF16/F16/F64.
    ADAPTER_DIR PEFT layout: adapter_config.json + adapter_model.safetensors.
    BATCH       safetensors with "input_ids" and "labels" (I32 or I64, [B, T];
                labels may hold -100 = ignored).
    OUT         safetensors, all F64:
                  "logits"        [B, T, V]
                  "loss"          [1]  mean token cross-entropy with HF's shift
                                       (logits[t] predicts labels[t+1])
                  "grad.<name>"   gradient of loss w.r.t. each LoRA tensor <name>
                                  of the adapter file (same shape).

    Dependencies: only torch (1.13 is enough) and numpy; safetensors files are
    parsed and written by hand. LoRA dropout is ignored (deterministic forward).
    Errors print a message on stderr and exit with status 1.
"""

import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch

IGNORE_INDEX = -100
ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
LORA_NAME_RE = re.compile(
    r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


class InputError(Exception):
    """Bad or unsupported input; reported on stderr with exit status 1."""


# ----------------------------------------------------------------------------
# safetensors I/O (by hand)
# ----------------------------------------------------------------------------

_NP_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4}


def _decode_tensor(raw, dtype, shape):
    """Bytes -> torch tensor: float dtypes become float64, integer dtypes int64."""
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        arr = bits.view(np.float32).astype(np.float64)
    elif dtype in ("F64", "F32", "F16"):
        arr = np.frombuffer(raw, dtype=_NP_DTYPES[dtype]).astype(np.float64)
    else:
        arr = np.frombuffer(raw, dtype=_NP_DTYPES[dtype]).astype(np.int64)
    return torch.from_numpy(arr.reshape(shape))


def read_safetensors(path):
    """Return {name: tensor} for every tensor in a .safetensors file."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise InputError(f"cannot read safetensors file {path}: {e}")
    if len(blob) < 8:
        raise InputError(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise InputError(f"{path}: header length {n} exceeds file size {len(blob)}")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: invalid JSON header: {e}")
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info.get("dtype"), info.get("shape")
        begin, end = info.get("data_offsets", (None, None))
        if dtype not in _ITEMSIZE:
            raise InputError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        numel = 1
        for d in shape:
            numel *= d
        if end - begin != numel * _ITEMSIZE[dtype] or begin < 0 or end > len(data):
            raise InputError(
                f"{path}: tensor {name!r} data_offsets {[begin, end]} do not match "
                f"dtype {dtype} shape {shape} (data section is {len(data)} bytes)")
        tensors[name] = _decode_tensor(data[begin:end], dtype, shape)
    return tensors


def write_safetensors(path, tensors):
    """Write {name: tensor} as an all-F64 safetensors file."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name].detach().cpu().double().numpy(), dtype="<f8")
        raw = arr.tobytes()
        header[name] = {"dtype": "F64", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)  # pad so the data section is 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in chunks:
            f.write(raw)


# ----------------------------------------------------------------------------
# Loading model, adapter and batch
# ----------------------------------------------------------------------------

def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e}")
    except ValueError as e:
        raise InputError(f"{path}: invalid JSON: {e}")


def load_config(model_dir):
    """config.json -> dict with defaults filled in and basic sanity checks."""
    raw = read_json(os.path.join(model_dir, "config.json"))
    required = ("hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "vocab_size", "rms_norm_eps")
    missing = [k for k in required if k not in raw]
    if missing:
        raise InputError(f"config.json is missing required keys: {missing}")
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise InputError(f"config.json: hidden_act {act!r} unsupported (only 'silu')")
    model_type = raw.get("model_type", "llama")
    if model_type not in ("llama", "mistral", "qwen2"):
        raise InputError(f"config.json: model_type {model_type!r} unsupported "
                         "(supported: llama, mistral, qwen2)")
    cfg = {k: raw[k] for k in required}
    cfg["model_type"] = model_type
    cfg["num_key_value_heads"] = raw.get("num_key_value_heads") or raw["num_attention_heads"]
    cfg["head_dim"] = raw.get("head_dim") or raw["hidden_size"] // raw["num_attention_heads"]
    cfg["rope_theta"] = raw.get("rope_theta", 10000.0)
    cfg["rope_scaling"] = raw.get("rope_scaling")
    cfg["tie_word_embeddings"] = bool(raw.get("tie_word_embeddings", False))
    cfg["biases"] = module_biases(raw, model_type)
    cfg["windows"] = layer_windows(raw, model_type, cfg["num_hidden_layers"])
    if cfg["num_attention_heads"] % cfg["num_key_value_heads"] != 0:
        raise InputError(f"num_attention_heads ({cfg['num_attention_heads']}) is not a multiple "
                         f"of num_key_value_heads ({cfg['num_key_value_heads']})")
    if cfg["head_dim"] % 2 != 0:
        raise InputError(f"head_dim must be even for RoPE, got {cfg['head_dim']}")
    return cfg


def module_biases(raw, model_type):
    """{module: has a bias} for the seven projections of a decoder layer."""
    if model_type == "llama":
        attn, mlp = bool(raw.get("attention_bias", False)), bool(raw.get("mlp_bias", False))
    else:
        attn, mlp = model_type == "qwen2", False
    biases = {m: attn for m in ATTN_MODULES}
    biases.update({m: mlp for m in MLP_MODULES})
    if model_type == "qwen2":
        biases["o_proj"] = False
    return biases


def layer_windows(raw, model_type, num_layers):
    """Sliding window W of each layer, None where the layer attends to every earlier key."""
    if model_type == "llama":
        return [None] * num_layers
    if model_type == "mistral":
        window = raw.get("sliding_window", 4096)
        return [window] * num_layers
    window = raw.get("sliding_window", 4096) if raw.get("use_sliding_window", False) else None
    types = raw.get("layer_types")
    if types is None:
        first = raw.get("max_window_layers", 28)
        types = ["sliding_attention" if window is not None and i >= first else "full_attention"
                 for i in range(num_layers)]
    if len(types) != num_layers:
        raise InputError(f"config.json: layer_types has {len(types)} entries for {num_layers} layers")
    if "sliding_attention" in types and window is None:
        raise InputError("config.json: layer_types has sliding layers but no sliding window is set")
    return [window if t == "sliding_attention" else None for t in types]


def load_model_weights(model_dir):
    """All model tensors (float64) from model.safetensors or an index of shards."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(single):
        return read_safetensors(single)
    if not os.path.exists(index):
        raise InputError(f"{model_dir}: neither model.safetensors nor "
                         "model.safetensors.index.json found")
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise InputError(f"{index}: missing 'weight_map' object")
    weights = {}
    for shard in sorted(set(weight_map.values())):
        weights.update(read_safetensors(os.path.join(model_dir, shard)))
    absent = sorted(n for n in weight_map if n not in weights)
    if absent:
        raise InputError(f"{index}: tensors listed but not found in their shards: {absent[:5]}")
    return weights


def expected_weight_shapes(cfg):
    """{name: shape} of every base weight the model needs."""
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    h, hkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    linears = {"self_attn.q_proj": (h * hd, d), "self_attn.k_proj": (hkv * hd, d),
               "self_attn.v_proj": (hkv * hd, d), "self_attn.o_proj": (d, h * hd),
               "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (d,)
        shapes[p + "post_attention_layernorm.weight"] = (d,)
        for mod, shape in linears.items():
            shapes[p + mod + ".weight"] = shape
            if cfg["biases"][mod.split(".")[1]]:
                shapes[p + mod + ".bias"] = (shape[0],)
    return shapes


def check_weights(weights, cfg):
    """Fail with a clear message when a needed weight is missing or misshaped."""
    for name, shape in expected_weight_shapes(cfg).items():
        if name not in weights:
            raise InputError(f"model weight {name!r} is missing")
        if tuple(weights[name].shape) != shape:
            raise InputError(f"model weight {name!r} has shape {list(weights[name].shape)}, "
                             f"expected {list(shape)}")
        if weights[name].dtype != torch.float64:
            raise InputError(f"model weight {name!r} has an integer dtype")


def load_adapter(adapter_dir, cfg):
    """Return (scale, {peft_name: leaf tensor requiring grad}, {(layer, module): (A, B)})."""
    acfg = read_json(os.path.join(adapter_dir, "adapter_config.json"))
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in acfg:
            raise InputError(f"adapter_config.json is missing {key!r}")
    r, alpha = acfg["r"], acfg["lora_alpha"]
    targets = acfg["target_modules"]
    if not isinstance(targets, list):
        raise InputError(f"adapter_config.json: target_modules must be a list, got {targets!r}")
    if acfg.get("rank_pattern") or acfg.get("alpha_pattern"):
        raise InputError("adapter_config.json: rank_pattern/alpha_pattern are not supported")
    if not isinstance(r, int) or r <= 0:
        raise InputError(f"adapter_config.json: r must be a positive integer, got {r!r}")
    scale = alpha / math.sqrt(r) if acfg.get("use_rslora", False) else alpha / r

    raw = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    params, pairs = {}, {}
    for name, t in raw.items():
        m = LORA_NAME_RE.match(name)
        if not m:
            raise InputError(f"adapter tensor {name!r} is not a recognised LoRA tensor name")
        layer, group, module, ab = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        expected_group = "self_attn" if module in ATTN_MODULES else (
            "mlp" if module in MLP_MODULES else None)
        if expected_group != group:
            raise InputError(f"adapter tensor {name!r}: unknown module {group}.{module}")
        if module not in targets:
            raise InputError(f"adapter tensor {name!r}: {module} is not in target_modules {targets}")
        if layer >= cfg["num_hidden_layers"]:
            raise InputError(f"adapter tensor {name!r}: layer {layer} out of range")
        if t.dtype != torch.float64:
            raise InputError(f"adapter tensor {name!r} has an integer dtype")
        leaf = t.clone().requires_grad_(True)
        params[name] = leaf
        pairs.setdefault((layer, module), {})[ab] = (name, leaf)

    shapes = expected_weight_shapes(cfg)
    modules = {}
    for (layer, module), ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise InputError(f"adapter: layer {layer} {module} has lora_{list(ab)[0]} "
                             "but not its partner")
        group = "self_attn" if module in ATTN_MODULES else "mlp"
        out_f, in_f = shapes[f"model.layers.{layer}.{group}.{module}.weight"]
        (a_name, a), (b_name, b) = ab["A"], ab["B"]
        if tuple(a.shape) != (r, in_f):
            raise InputError(f"{a_name}: shape {list(a.shape)}, expected [{r}, {in_f}]")
        if tuple(b.shape) != (out_f, r):
            raise InputError(f"{b_name}: shape {list(b.shape)}, expected [{out_f}, {r}]")
        modules[(layer, module)] = (a, b)
    if not params:
        raise InputError("adapter_model.safetensors contains no LoRA tensors")
    return scale, params, modules


def load_batch(path, vocab_size):
    """(input_ids, labels) as int64 [B, T], validated."""
    t = read_safetensors(path)
    for key in ("input_ids", "labels"):
        if key not in t:
            raise InputError(f"{path}: missing tensor {key!r}")
        if t[key].dtype != torch.int64:
            raise InputError(f"{path}: {key!r} must be I32 or I64")
        if t[key].dim() != 2:
            raise InputError(f"{path}: {key!r} must be 2-D [B, T], got {list(t[key].shape)}")
    ids, labels = t["input_ids"], t["labels"]
    if ids.shape != labels.shape:
        raise InputError(f"{path}: input_ids {list(ids.shape)} and labels "
                         f"{list(labels.shape)} differ in shape")
    if ids.numel() == 0:
        raise InputError(f"{path}: empty batch")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise InputError(f"{path}: input_ids out of range [0, {vocab_size})")
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= vocab_size))
    if bad.any():
        raise InputError(f"{path}: labels must be -100 or in [0, {vocab_size})")
    if not (labels[:, 1:] != IGNORE_INDEX).any():
        raise InputError(f"{path}: no label tokens after the shift (loss would be 0/0)")
    return ids, labels


# ----------------------------------------------------------------------------
# Model math
# ----------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return w * x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


def rope_inv_freq(cfg):
    """Per-pair inverse frequencies [hd/2], with optional llama3 / linear scaling."""
    hd = cfg["head_dim"]
    inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    rs = cfg["rope_scaling"]
    if not rs:
        return inv_freq
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "default":
        return inv_freq
    needed = {"linear": ("factor",),
              "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                         "original_max_position_embeddings")}.get(kind, ())
    missing = [k for k in needed if k not in rs]
    if missing:
        raise InputError(f"config.json: rope_scaling ({kind}) is missing {missing}")
    if kind == "linear":
        return inv_freq / rs["factor"]
    if kind == "llama3":
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        orig = rs["original_max_position_embeddings"]
        low_freq_wavelen, high_freq_wavelen = orig / low, orig / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (orig / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        return torch.where(is_medium, smoothed, scaled)
    raise InputError(f"config.json: rope_scaling type {kind!r} unsupported "
                     "(supported: null, 'default', 'linear', 'llama3')")


def rope_cos_sin(cfg, seq_len):
    """cos, sin tables [T, hd] for positions 0..T-1."""
    pos = torch.arange(seq_len, dtype=torch.float64)
    angle = pos[:, None] * rope_inv_freq(cfg)[None, :]
    emb = torch.cat([angle, angle], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x, cos, sin):
    """x: [B, heads, T, hd]."""
    return x * cos + rotate_half(x) * sin


def lora_linear(x, weights, prefix, has_bias, lora, scale):
    """y = x W^T + b + scale * (x A^T) B^T; the bias only where the architecture has one (a
    stored bias it lacks is ignored, as HF does), the LoRA term only if lora=(A, B) is given."""
    y = x @ weights[prefix + ".weight"].T
    if has_bias:
        y = y + weights[prefix + ".bias"]
    if lora is not None:
        a, b = lora
        y = y + scale * ((x @ a.T) @ b.T)
    return y


def attention(x, weights, layer, cfg, lora_mods, scale, cos, sin):
    """Causal GQA self-attention (sliding-window where the layer has one) incl. o_proj.
    x: [B, T, D] (already normed)."""
    bsz, seq, _ = x.shape
    h, hkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    p = f"model.layers.{layer}.self_attn."

    def proj(name, x_in):
        return lora_linear(x_in, weights, p + name, cfg["biases"][name], lora_mods.get((layer, name)), scale)

    q = proj("q_proj", x).view(bsz, seq, h, hd).transpose(1, 2)
    k = proj("k_proj", x).view(bsz, seq, hkv, hd).transpose(1, 2)
    v = proj("v_proj", x).view(bsz, seq, hkv, hd).transpose(1, 2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    # query head j uses kv head j // (h / hkv)
    k = k.repeat_interleave(h // hkv, dim=1)
    v = v.repeat_interleave(h // hkv, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    query_pos = torch.arange(seq)[:, None]
    key_pos = torch.arange(seq)[None, :]
    visible = key_pos <= query_pos
    window = cfg["windows"][layer]
    if window is not None:
        visible = visible & (key_pos > query_pos - window)
    scores = scores.masked_fill(~visible, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v  # [B, H, T, hd]
    out = out.transpose(1, 2).reshape(bsz, seq, h * hd)
    return proj("o_proj", out)


def mlp(x, weights, layer, cfg, lora_mods, scale):
    """SwiGLU: down(silu(gate(x)) * up(x))."""
    p = f"model.layers.{layer}.mlp."

    def proj(name, x_in):
        return lora_linear(x_in, weights, p + name, cfg["biases"][name], lora_mods.get((layer, name)), scale)

    return proj("down_proj", torch.nn.functional.silu(proj("gate_proj", x)) * proj("up_proj", x))


def decoder_layer(x, weights, layer, cfg, lora_mods, scale, cos, sin):
    p, eps = f"model.layers.{layer}.", cfg["rms_norm_eps"]
    h = x + attention(rms_norm(x, weights[p + "input_layernorm.weight"], eps),
                      weights, layer, cfg, lora_mods, scale, cos, sin)
    return h + mlp(rms_norm(h, weights[p + "post_attention_layernorm.weight"], eps),
                   weights, layer, cfg, lora_mods, scale)


def forward(input_ids, weights, cfg, lora_mods, scale):
    """Logits [B, T, V] in float64."""
    x = weights["model.embed_tokens.weight"][input_ids]
    cos, sin = rope_cos_sin(cfg, input_ids.shape[1])
    for layer in range(cfg["num_hidden_layers"]):
        x = decoder_layer(x, weights, layer, cfg, lora_mods, scale, cos, sin)
    x = rms_norm(x, weights["model.norm.weight"], cfg["rms_norm_eps"])
    head = weights["model.embed_tokens.weight" if cfg["tie_word_embeddings"] else "lm_head.weight"]
    return x @ head.T


def causal_lm_loss(logits, labels):
    """HF shift: logits[:, t] predicts labels[:, t+1]; mean over non-ignored targets."""
    v = logits.shape[-1]
    shift_logits = logits[:, :-1, :].reshape(-1, v)
    shift_labels = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(shift_logits, shift_labels,
                                             ignore_index=IGNORE_INDEX, reduction="mean")


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------

def run(model_dir, adapter_dir, batch_path, out_path):
    cfg = load_config(model_dir)
    weights = load_model_weights(model_dir)
    check_weights(weights, cfg)
    scale, params, lora_mods = load_adapter(adapter_dir, cfg)
    input_ids, labels = load_batch(batch_path, cfg["vocab_size"])

    logits = forward(input_ids, weights, cfg, lora_mods, scale)
    loss = causal_lm_loss(logits, labels)
    names = sorted(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)

    out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for name, g in zip(names, grads):
        out["grad." + name] = torch.zeros_like(params[name]) if g is None else g
    write_safetensors(out_path, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--adapter", required=True, help="PEFT LoRA adapter directory")
    ap.add_argument("--batch", required=True, help="safetensors with input_ids, labels")
    ap.add_argument("--out", required=True, help="output safetensors (F64)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(True)
    try:
        run(args.model, args.adapter, args.batch, args.out)
    except (InputError, KeyError) as e:
        msg = str(e) if isinstance(e, InputError) else f"missing key {e}"
        print(f"llama_reference.py: error: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
