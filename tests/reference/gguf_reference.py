#!/usr/bin/env python3
"""GGUF files and expected values from the `gguf` Python package (llama.cpp's gguf-py), for tests/gguf_test.cpp.

    PYTHON tests/reference/gguf_reference.py quants OUT_DIR
    PYTHON tests/reference/gguf_reference.py model KIND OUT_DIR        (KIND: llama, llama-linear, qwen2, llama-spm)
    PYTHON tests/reference/gguf_reference.py encode TOKENIZER.json CORPUS.json OUT.json
    PYTHON tests/reference/gguf_reference.py smollm GGUF OUT_DIR

quants  OUT_DIR/quants.gguf (general.alignment 64) holds, for every type T the package quantizes
        (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: random normal data through gguf.quants.quantize)
        or only dequantizes (Q4_K, Q5_K, Q6_K: random block bytes with f16 scales drawn from a
        normal), a tensor "data.T" and the F32 tensor "expected.T" = gguf.quants.dequantize(data.T).
        It also holds a metadata key of every value type and an array of every scalar element type
        ("test.*"), which OUT_DIR/metadata.json lists as {key: {"type": name, "value": value,
        "element_type": name of an array's element type where it is set explicitly, else null}}.
model   a random HF-layout model and tokenizer (trained with HF `tokenizers`), written three ways:
        OUT_DIR/hf/model.safetensors and OUT_DIR/hf/tokenizer.json (the originals),
        OUT_DIR/model.gguf (what llama.cpp's convert_hf_to_gguf.py would write: its tensor names,
        for llama the q/k rows permuted by its permute(), F32 tensors, tokenizer.ggml.* from the
        tokenizer as its get_vocab_base() reads it, and for llama the rope_freqs.weight of a llama3
        rope scaling), and OUT_DIR/expected.json {"config": the HF config.json}.
        llama: Llama 3 style (pre "llama-bpe", BOS added, untied, llama3 rope scaling);
        llama-linear: the llama model with linear rope scaling (factor 4) instead, written as
        convert_hf_to_gguf.py writes it: ARCH.rope.scaling.type "linear" and ARCH.rope.scaling.factor,
        no rope_freqs.weight;
        qwen2: Qwen2 style (pre "qwen2", NFC, no BOS, tied embeddings, q/k/v biases);
        llama-spm: the llama model with a Llama 2 style SentencePiece BPE tokenizer (byte fallback,
        ▁ for spaces), in the GGUF as tokenizer model "llama": pieces, scores (−id: merge order),
        token types.
encode  OUT.json {"ids": [...], "ids_with_special_tokens": [...], "decoded": [...]} per corpus line
        (CORPUS.json {"lines": [...]}) under HF tokenizers.
smollm  OUT_DIR/expected.safetensors: a few tensors of the GGUF dequantized by gguf.quants under
        their HF names, q_proj/k_proj with llama.cpp's row permutation undone here (independently
        of the C++ importer); the embedding is cut to its first 2048 rows to stay small.
"""

import json
import os
import struct
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q


def write_safetensors(path, tensors):
    """A minimal safetensors writer (F32 only), so the test reads the references with the engine's reader."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for blob in blobs:
            out.write(blob)


# ---- quants --------------------------------------------------------------------------------------

QUANTIZED = [Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
K_QUANTS = [Q.Q4_K, Q.Q5_K, Q.Q6_K]


def random_f16(rng, count, scale):
    return (rng.standard_normal(count) * scale).astype(np.float16).view(np.uint8).reshape(count, 2)


def random_k_blocks(rng, qtype, n_blocks):
    """Valid blocks of a K-quant: random code bytes, f16 scales from a normal (no inf/nan)."""
    def codes(n):
        return rng.integers(0, 256, size=(n_blocks, n), dtype=np.uint8)
    if qtype in (Q.Q4_K, Q.Q5_K):
        parts = [random_f16(rng, n_blocks, 0.05), random_f16(rng, n_blocks, 0.05), codes(12)]
        parts += [codes(32), codes(128)] if qtype == Q.Q5_K else [codes(128)]
    else:  # Q6_K: ql, qh, int8 scales, d
        parts = [codes(128), codes(64), codes(16), random_f16(rng, n_blocks, 0.01)]
    blocks = np.concatenate(parts, axis=1)
    assert blocks.shape[1] == gguf.GGML_QUANT_SIZES[qtype][1]
    return blocks


METADATA = [
    ("test.u8", gguf.GGUFValueType.UINT8, 200),
    ("test.i8", gguf.GGUFValueType.INT8, -100),
    ("test.u16", gguf.GGUFValueType.UINT16, 60000),
    ("test.i16", gguf.GGUFValueType.INT16, -30000),
    ("test.u32", gguf.GGUFValueType.UINT32, 4000000000),
    ("test.i32", gguf.GGUFValueType.INT32, -2000000000),
    ("test.u64", gguf.GGUFValueType.UINT64, 2 ** 63 + 5),
    ("test.i64", gguf.GGUFValueType.INT64, -(2 ** 62)),
    ("test.f32", gguf.GGUFValueType.FLOAT32, 1e-5),
    ("test.f64", gguf.GGUFValueType.FLOAT64, 3.141592653589793),
    ("test.bool", gguf.GGUFValueType.BOOL, True),
    ("test.string", gguf.GGUFValueType.STRING, "héllo, 世界 🙂"),
    ("test.array_i32", gguf.GGUFValueType.ARRAY, [1, -2, 3]),
    ("test.array_string", gguf.GGUFValueType.ARRAY, ["a", "", "Ġthe"]),
    ("test.array_f32", gguf.GGUFValueType.ARRAY, [0.5, -1.25]),
    ("test.array_nested", gguf.GGUFValueType.ARRAY, [[1, 2], [3]]),
    # Arrays of every scalar element type (the reader keeps them packed and decodes on access).
    ("test.array_u8", gguf.GGUFValueType.ARRAY, [0, 200, 255], gguf.GGUFValueType.UINT8),
    ("test.array_i8", gguf.GGUFValueType.ARRAY, [-128, -1, 127], gguf.GGUFValueType.INT8),
    ("test.array_u16", gguf.GGUFValueType.ARRAY, [1, 65535], gguf.GGUFValueType.UINT16),
    ("test.array_i16", gguf.GGUFValueType.ARRAY, [-32768, 5], gguf.GGUFValueType.INT16),
    ("test.array_u32", gguf.GGUFValueType.ARRAY, [4000000000, 0], gguf.GGUFValueType.UINT32),
    ("test.array_u64", gguf.GGUFValueType.ARRAY, [2 ** 63 + 5, 7], gguf.GGUFValueType.UINT64),
    ("test.array_i64", gguf.GGUFValueType.ARRAY, [-(2 ** 62), 9], gguf.GGUFValueType.INT64),
    ("test.array_f64", gguf.GGUFValueType.ARRAY, [3.141592653589793, -2.5e-300], gguf.GGUFValueType.FLOAT64),
    ("test.array_bool", gguf.GGUFValueType.ARRAY, [True, False, True], gguf.GGUFValueType.BOOL),
]


def quants(out_dir):
    rng = np.random.default_rng(1234)
    writer = gguf.GGUFWriter(os.path.join(out_dir, "quants.gguf"), "llama")
    writer.add_custom_alignment(64)
    for key, vtype, value, *sub_type in METADATA:
        writer.add_key_value(key, value, vtype, *sub_type)
    rows, cols = 3, 512
    for qtype in QUANTIZED:
        data = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
        if qtype in (Q.F16, Q.BF16):  # zeros, signed zero, subnormals, large values, infinity
            data[0, :8] = [0.0, -0.0, 3e-7, -6e-8, 60000.0, -1.5e38 if qtype == Q.BF16 else -65000.0, np.inf, 1.0]
        packed = gguf.quants.quantize(data, qtype)
        if packed.dtype == np.uint8:
            writer.add_tensor("data." + qtype.name, packed, raw_shape=packed.shape, raw_dtype=qtype)
        else:
            writer.add_tensor("data." + qtype.name, packed)
        writer.add_tensor("expected." + qtype.name, gguf.quants.dequantize(packed, qtype).astype(np.float32))
    for qtype in K_QUANTS:
        block_elements, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        blocks = random_k_blocks(rng, qtype, rows * cols // block_elements).reshape(rows, -1)
        writer.add_tensor("data." + qtype.name, blocks, raw_shape=blocks.shape, raw_dtype=qtype)
        writer.add_tensor("expected." + qtype.name, gguf.quants.dequantize(blocks, qtype).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    names = {int(t): t.name.lower() for t in gguf.GGUFValueType}
    metadata = {key: {"type": names[int(vtype)], "value": value,
                      "element_type": names[int(sub_type[0])] if sub_type else None}
                for key, vtype, value, *sub_type in METADATA}
    with open(os.path.join(out_dir, "metadata.json"), "w") as out:
        json.dump(metadata, out)


# ---- model ---------------------------------------------------------------------------------------

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = ("the of and to in is federated learning model data training adapter weights server client round "
         "privacy gradient loss token attention layer quick brown fox jumps over lazy dog hello world "
         "café naïve résumé über straße 東京 日本 首都 中文 한국어 Привет мир 🙂 🚀").split()


def training_corpus(rng, lines=600):
    code = ["def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
            "x = {'a': 1, \"b\": [2, 3]}", "It's what we've said, they'll see"]
    out = []
    for _ in range(lines):
        r = rng.random()
        if r < 0.2:
            out.append(code[rng.integers(len(code))])
        elif r < 0.3:
            out.append(" ".join(str(rng.integers(10 ** int(rng.integers(1, 9)))) for _ in range(3)))
        else:
            out.append(" ".join(WORDS[i] for i in rng.integers(len(WORDS), size=int(rng.integers(3, 12)))))
    return out


def train_tokenizer(kind, rng):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers
    llama = kind == "llama"
    specials = (["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] if llama
                else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = Tokenizer(models.BPE(ignore_merges=llama))
    if not llama:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN if llama else QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=llama, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(training_corpus(rng), trainer=trainer)
    tokenizer.add_tokens([AddedToken("<tool>", normalized=False, special=False)])
    if llama:
        bos = specials[0]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer, specials


def train_spm_tokenizer(rng):
    """A Llama 2 style tokenizer.json (what transformers makes of a SentencePiece BPE model): ids 0-2
    <unk> <s> </s>, 3-258 the byte pieces <0x00>..<0xFF>, then the trained pieces; ▁ for spaces;
    byte fallback; BOS added."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers
    specials = ["<unk>", "<s>", "</s>"]
    normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tokenizer.normalizer = normalizer
    # SentencePiece keeps pieces within words: train on words that start at each ▁.
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False)
    trainer_tokenizer.train_from_iterator(training_corpus(rng), trainer=trainer)
    trained = json.loads(trainer_tokenizer.to_str())["model"]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [t for t, _ in sorted(trained["vocab"].items(), key=lambda item: item[1]) if t not in specials]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizer
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    tokenizer.add_tokens([AddedToken("<tool>", normalized=False, special=False)])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s>:1 $B:1",
                                                             special_tokens=[("<s>", 1)])
    return tokenizer, specials


def permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def llama3_rope_factors(theta, head_dim, factor, low, high, original):
    """convert_hf_to_gguf.py's LlamaModel rope_freqs for rope_type llama3 (float32 frequencies)."""
    import math
    freqs = 1.0 / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < original / high:
            out.append(1)
        elif wavelen > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def model(kind, out_dir):
    linear = kind == "llama-linear"
    rng = np.random.default_rng(7 if kind in ("llama", "llama-linear") else 8)
    spm = kind == "llama-spm"
    tokenizer, specials = train_spm_tokenizer(rng) if spm else train_tokenizer("llama" if linear else kind, rng)
    arch = "qwen2" if kind == "qwen2" else "llama"
    llama = arch == "llama"
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    n_vocab = max(vocab.values()) + 1
    hidden, heads, kv_heads, head_dim, ff, layers = 64, 4, 2, 16, 96, 2
    theta, eps, context = (10000.0, 1e-5, 2048) if llama else (1000000.0, 1e-6, 4096)
    if linear:
        rope_scaling = {"rope_type": "linear", "factor": 4.0}
    elif llama:
        rope_scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 8.0,
                        "original_max_position_embeddings": 1024}
    else:
        rope_scaling = None
    added = tokenizer.get_added_tokens_decoder()
    bos_id = tokenizer.token_to_id("<s>" if spm else specials[0]) if llama else None
    eos_id = tokenizer.token_to_id(specials[2] if llama else "<|im_end|>")
    config = {"architectures": ["LlamaForCausalLM" if llama else "Qwen2ForCausalLM"], "model_type": arch,
              "hidden_size": hidden, "intermediate_size": ff, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
              "vocab_size": n_vocab, "max_position_embeddings": context, "rms_norm_eps": eps, "rope_theta": theta,
              "rope_scaling": rope_scaling, "tie_word_embeddings": not llama, "eos_token_id": eos_id}
    if bos_id is not None:
        config["bos_token_id"] = bos_id

    def normal(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)
    hf = {"model.embed_tokens.weight": normal(n_vocab, hidden)}
    projections = [("self_attn.q_proj", "attn_q", heads * head_dim, hidden), ("self_attn.k_proj", "attn_k", kv_heads * head_dim, hidden),
                   ("self_attn.v_proj", "attn_v", kv_heads * head_dim, hidden), ("self_attn.o_proj", "attn_output", hidden, heads * head_dim),
                   ("mlp.gate_proj", "ffn_gate", ff, hidden), ("mlp.up_proj", "ffn_up", ff, hidden), ("mlp.down_proj", "ffn_down", hidden, ff)]
    gguf_names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                  "lm_head.weight": "output.weight"}
    for layer in range(layers):
        p, g = f"model.layers.{layer}.", f"blk.{layer}."
        hf[p + "input_layernorm.weight"] = 1 + normal(hidden)
        gguf_names[p + "input_layernorm.weight"] = g + "attn_norm.weight"
        for hf_name, gguf_name, rows, cols in projections:
            hf[p + hf_name + ".weight"] = normal(rows, cols)
            gguf_names[p + hf_name + ".weight"] = g + gguf_name + ".weight"
            if not llama and hf_name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                hf[p + hf_name + ".bias"] = normal(rows)
                gguf_names[p + hf_name + ".bias"] = g + gguf_name + ".bias"
        hf[p + "post_attention_layernorm.weight"] = 1 + normal(hidden)
        gguf_names[p + "post_attention_layernorm.weight"] = g + "ffn_norm.weight"
    hf["model.norm.weight"] = 1 + normal(hidden)
    if llama:
        hf["lm_head.weight"] = normal(n_vocab, hidden)

    os.makedirs(os.path.join(out_dir, "hf"), exist_ok=True)
    write_safetensors(os.path.join(out_dir, "hf", "model.safetensors"), hf)
    tokenizer.save(os.path.join(out_dir, "hf", "tokenizer.json"))

    writer = gguf.GGUFWriter(os.path.join(out_dir, "model.gguf"), arch)
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(eps)
    writer.add_rope_dimension_count(head_dim)
    if linear:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope_scaling["factor"])
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    reverse = {i: t for t, i in vocab.items()}
    tokens = [reverse[i] for i in range(n_vocab)]
    if spm:
        # As convert_hf_to_gguf.py writes a SentencePiece vocabulary: pieces with scores and types.
        # A BPE SentencePiece model scores its pieces in merge order, later ones lower: -id here.
        types, scores = [], []
        for i, token in enumerate(tokens):
            if token == "<unk>":
                types.append(gguf.TokenType.UNKNOWN)
            elif i in added:
                types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
            elif token.startswith("<0x") and len(token) == 6:
                types.append(gguf.TokenType.BYTE)
            else:
                types.append(gguf.TokenType.NORMAL)
            scores.append(-float(i) if types[-1] == gguf.TokenType.NORMAL else 0.0)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(0)
        writer.add_add_space_prefix(True)
    else:
        # The vocabulary as convert_hf_to_gguf.py's get_vocab_base() reads it.
        types = []
        for i in range(n_vocab):
            if i in added:
                types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
            else:
                types.append(gguf.TokenType.NORMAL)
        merges = json.loads(tokenizer.to_str())["model"]["merges"]
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("llama-bpe" if llama else "qwen2")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    if bos_id is not None:
        writer.add_bos_token_id(bos_id)
    writer.add_eos_token_id(eos_id)
    writer.add_add_bos_token(llama)
    if not llama:
        writer.add_pad_token_id(tokenizer.token_to_id("<|endoftext|>"))
    writer.add_chat_template("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    for name, array in hf.items():
        if llama and name.endswith("q_proj.weight"):
            array = permute(array, heads, heads)
        if llama and name.endswith("k_proj.weight"):
            array = permute(array, heads, kv_heads)
        writer.add_tensor(gguf_names[name], array)
    if llama and not linear:
        writer.add_tensor("rope_freqs.weight", llama3_rope_factors(theta, head_dim, 8.0, 1.0, 8.0, 1024))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open(os.path.join(out_dir, "expected.json"), "w") as out:
        json.dump({"config": config}, out)


# ---- encode --------------------------------------------------------------------------------------

def encode(tokenizer_path, corpus_path, out_path):
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(tokenizer_path)
    with open(corpus_path) as f:
        lines = json.load(f)["lines"]
    ids = [tokenizer.encode(line, add_special_tokens=False).ids for line in lines]
    result = {"ids": ids,
              "ids_with_special_tokens": [tokenizer.encode(line).ids for line in lines],
              "decoded": [tokenizer.decode(i, skip_special_tokens=False) for i in ids]}
    with open(out_path, "w") as out:
        json.dump(result, out)


# ---- smollm --------------------------------------------------------------------------------------

def unpermute(weights, n_head):
    """Inverse of permute(): GGUF rows (head, j, half) back to HF rows (head, half, j)."""
    return (weights.reshape(n_head, weights.shape[0] // n_head // 2, 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def smollm(gguf_path, out_dir):
    reader = gguf.GGUFReader(gguf_path)
    tensors = {t.name: t for t in reader.tensors}
    heads = int(reader.fields["llama.attention.head_count"].contents())
    kv_heads = int(reader.fields["llama.attention.head_count_kv"].contents())

    def get(name, rows=None):
        t = tensors[name]
        return gguf.quants.dequantize(t.data[:rows], t.tensor_type).astype(np.float32)
    expected = {
        "model.embed_tokens.weight": get("token_embd.weight", 2048),
        "model.layers.0.self_attn.q_proj.weight": unpermute(get("blk.0.attn_q.weight"), heads),
        "model.layers.0.self_attn.k_proj.weight": unpermute(get("blk.0.attn_k.weight"), kv_heads),
        "model.layers.29.self_attn.v_proj.weight": get("blk.29.attn_v.weight"),
        "model.layers.3.mlp.down_proj.weight": get("blk.3.ffn_down.weight"),
        "model.layers.0.input_layernorm.weight": get("blk.0.attn_norm.weight"),
        "model.norm.weight": get("output_norm.weight"),
    }
    write_safetensors(os.path.join(out_dir, "expected.safetensors"), expected)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "quants":
        quants(sys.argv[2])
    elif command == "model":
        model(sys.argv[2], sys.argv[3])
    elif command == "encode":
        encode(sys.argv[2], sys.argv[3], sys.argv[4])
    elif command == "smollm":
        smollm(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + command)
