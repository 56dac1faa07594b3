#!/usr/bin/env python3
"""Reference tokenizers and their outputs from HF `tokenizers` (PyPI), for tests/hf_tokenizer_test.cpp.

    PYTHON tests/reference/tokenizers_reference.py build OUT_DIR CORPUS.json [KIND ...]
    PYTHON tests/reference/tokenizers_reference.py expect TOKENIZER.json CORPUS.json OUT.json

CORPUS.json  {"lines": [text, ...]}: the texts to encode.
build        trains one small BPE per kind of pipeline that real checkpoints ship (KINDS below, or
             only the KINDs named) on a generated corpus plus the given lines, and writes
             OUT_DIR/KIND/tokenizer.json, OUT_DIR/KIND/tokenizer_config.json for the kinds of CONFIGS,
             and OUT_DIR/KIND/expected.json (as `expect` writes it).
expect       OUT.json {"lines": [{"text", "ids", "ids_with_special_tokens", "decoded",
                                  "decoded_with_special_tokens"}],
                       "decode_cases": [{"ids", "decoded", "decoded_with_special_tokens"}],
                       "token_to_id": {token: id}, "vocab_size": one past the largest id,
                       "special_tokens": [the added tokens marked special]}
             ids: encode(text, add_special_tokens=False); decoded*: decode(ids, skip_special_tokens=
             True / False), then transformers' clean_up_tokenization when the tokenizer_config.json
             beside TOKENIZER.json sets clean_up_tokenization_spaces; decode_cases: random id
             sequences over the whole vocabulary, so the decoders meet invalid UTF-8 and stray pieces.
"""

import json
import os
import random
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Every kind knows these, so the corpus' embedded special-token strings are matched in all of them.
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|endoftext|>",
                  "<|im_start|>", "<|im_end|>"]

WORDS = ("the of and to in is was for that with as on by at from this be are or an it which not have one "
         "federated learning model data training adapter weights rank matrix server client round update "
         "privacy noise gradient loss token sequence attention layer norm tokenizer merge vocabulary byte "
         "quick brown fox jumps over lazy dog hello world python function return value string number "
         "café naïve résumé façade über straße école garçon Ångström señor "
         "東京 日本 首都 中文 分词 测试 한국어 안녕하세요 Привет мир Γειά σου κόσμε").split()


def generated_corpus(seed=1234, lines=2500):
    """Deterministic text with the corpus' scripts, code, numbers and whitespace habits."""
    rng = random.Random(seed)
    code = ["def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
            "if x == 1:\n    print('one')\nelse:\n    pass", "std::vector<int> v{1, 2, 3};", "x = {'a': 1, \"b\": [2, 3]}"]
    out = []
    for _ in range(lines):
        choice = rng.random()
        if choice < 0.15:
            out.append(rng.choice(code))
        elif choice < 0.25:
            out.append(" ".join(str(rng.randrange(10 ** rng.randrange(1, 12))) for _ in range(rng.randrange(1, 6))))
        else:
            words = [rng.choice(WORDS) for _ in range(rng.randrange(3, 15))]
            words = [w.capitalize() if rng.random() < 0.1 else w for w in words]
            sep = rng.choice([" ", " ", " ", "  ", "\t", "\n", ", "])
            out.append(sep.join(words) + rng.choice([".", "!", "?", "", "\n", "'s", " 's"]))
    return out


def byte_level_alphabet():
    return pre_tokenizers.ByteLevel.alphabet()


def train(pipeline, texts, vocab_size, byte_level, limit_alphabet=None):
    tokenizer = Tokenizer(models.BPE(unk_token=pipeline.get("unk_token")))
    if pipeline.get("normalizer") is not None:
        tokenizer.normalizer = pipeline["normalizer"]
    if pipeline.get("train_pre_tokenizer", pipeline.get("pre_tokenizer")) is not None:
        tokenizer.pre_tokenizer = pipeline.get("train_pre_tokenizer", pipeline.get("pre_tokenizer"))
    options = dict(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    if byte_level:
        options["initial_alphabet"] = byte_level_alphabet()
    if limit_alphabet is not None:
        options["limit_alphabet"] = limit_alphabet
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(**options))
    if "train_pre_tokenizer" in pipeline:
        tokenizer.pre_tokenizer = pipeline["pre_tokenizer"]
    if "pre_tokenizer" in pipeline and pipeline["pre_tokenizer"] is None:
        tokenizer.pre_tokenizer = None
    return tokenizer


def edit_model(tokenizer, edit):
    """Applies `edit` to the JSON of the tokenizer's model (fields the trainer does not set)."""
    spec = json.loads(tokenizer.to_str())
    edit(spec["model"])
    return Tokenizer.from_str(json.dumps(spec))


def add_to_vocab(model, pieces):
    next_id = max(model["vocab"].values()) + 1
    for piece in pieces:
        if piece not in model["vocab"]:
            model["vocab"][piece] = next_id
            next_id += 1


def whole_pre_tokens(tokenizer, lines, count):
    """Pre-tokens of `lines` longer than 4 characters that the merges do not reach as one piece."""
    picked = []
    for line in lines:
        for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(line):
            if len(piece) > 4 and tokenizer.token_to_id(piece) is None and piece not in picked:
                picked.append(piece)
    return picked[:count]


def special_id(tokenizer, token):
    return tokenizer.token_to_id(token)


def build_llama3(texts, lines):
    """Byte-level BPE, GPT-4 style Split regex then ByteLevel without its own regex, ignore_merges."""
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                            use_regex=False)])
    tokenizer = train({"pre_tokenizer": pre}, texts, 1200, byte_level=True)
    extra = whole_pre_tokens(tokenizer, lines, 40)  # reachable only through ignore_merges
    tokenizer = edit_model(tokenizer, lambda m: (m.update(ignore_merges=True), add_to_vocab(m, extra)))
    bos = "<|begin_of_text|>"
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=bos + " $A", pair=bos + " $A " + bos + " $B",
                                      special_tokens=[(bos, special_id(tokenizer, bos))])])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def build_qwen2(texts, lines):
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer = train({"normalizer": normalizers.NFC(), "pre_tokenizer": pre}, texts, 1200, byte_level=True)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def build_smollm2(texts, lines):
    pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tokenizer = train({"pre_tokenizer": pre}, texts, 1000, byte_level=True)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def byte_pieces():
    return ["<0x%02X>" % b for b in range(256)]


def with_byte_fallback(tokenizer, fuse_unk=True):
    def edit(model):
        model.update(byte_fallback=True, fuse_unk=fuse_unk, unk_token="<unk>")
        add_to_vocab(model, byte_pieces())
    return edit_model(tokenizer, edit)


def llama2_template(tokenizer, eos):
    single = "<s> $A" + (" </s>" if eos else "")
    return processors.TemplateProcessing(single=single, pair="<s> $A <s> $B",
                                         special_tokens=[("<s>", special_id(tokenizer, "<s>")),
                                                         ("</s>", special_id(tokenizer, "</s>"))])


def build_llama2_legacy(texts, lines):
    """Llama 2 / TinyLlama's tokenizer.json: Prepend + Replace normalizer, no pre-tokenizer, byte fallback."""
    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Trained over Metaspace words (as SentencePiece trains), then used without a pre-tokenizer.
    train_pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tokenizer = train({"normalizer": normalizer, "train_pre_tokenizer": train_pre, "pre_tokenizer": None,
                       "unk_token": "<unk>"}, texts, 900, byte_level=False, limit_alphabet=120)
    tokenizer = with_byte_fallback(tokenizer)
    tokenizer.post_processor = llama2_template(tokenizer, eos=False)
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(content=" ", left=1, right=0)])
    return tokenizer


def build_llama2_metaspace(texts, lines):
    """Mistral / converted-Llama style: Metaspace pre-tokenizer prepending to the first piece only."""
    pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer = train({"train_pre_tokenizer": pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
                       "pre_tokenizer": pre, "unk_token": "<unk>"}, texts, 900, byte_level=False,
                      limit_alphabet=120)
    tokenizer = with_byte_fallback(tokenizer)
    tokenizer.post_processor = llama2_template(tokenizer, eos=True)
    tokenizer.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"),
                                           decoders.ByteFallback(), decoders.Fuse()])
    return tokenizer


def build_metaspace_split(texts, lines):
    """Metaspace splitting at each ▁ (prepend always) after right-stripping, unknown characters fused
    into <unk>."""
    pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Strip(left=False, right=True)])
    tokenizer = train({"normalizer": normalizer, "pre_tokenizer": pre, "unk_token": "<unk>"}, texts, 700,
                      byte_level=False, limit_alphabet=90)
    tokenizer = edit_model(tokenizer, lambda m: m.update(fuse_unk=True))
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return tokenizer


def build_word_splits(texts, lines):
    """Lower-cased, accent-split words; Whitespace and Digits splits; unknowns kept apart; added tokens
    that are normalized, single-word or strip spaces. Decoder null (pieces joined by spaces)."""
    normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(),
                                       normalizers.Replace(Regex(r"\d{5,}"), "#")])
    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=False)])
    # The tokens added outside the vocabulary below are kept from the trainer's text.
    outside_words = ("wug", "zorp", "blick", "dax")
    texts = [t for t in texts if not any(word in t.lower() for word in outside_words)]
    tokenizer = train({"normalizer": normalizer, "pre_tokenizer": pre, "unk_token": "<unk>"}, texts, 700,
                      byte_level=False, limit_alphabet=80)
    tokenizer.add_tokens([AddedToken("Hello World", normalized=True), AddedToken("fox", single_word=True),
                          AddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False)])
    # Tokens the model cannot spell as one piece, so a flag that rejects or widens a match changes
    # the ids ("fox" above is also a model token: rejected or not, it encodes the same).
    outside_vocab = [AddedToken("wug", single_word=True), AddedToken("Zorp", single_word=True, normalized=False),
                     AddedToken("blick", lstrip=True), AddedToken("dax", rstrip=True, normalized=False)]
    model_vocab = tokenizer.get_vocab(with_added_tokens=False)
    inside = [t.content for t in outside_vocab if t.content in model_vocab]
    if inside:
        raise SystemExit("word_splits: the trained vocabulary holds %s; pick other added tokens" % inside)
    tokenizer.add_tokens(outside_vocab)
    # Special but normalized: its text in decoding is "<sep>", which HF then does not skip.
    tokenizer.add_special_tokens([AddedToken("<Sep>", normalized=True, special=True)])
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", special_id(tokenizer, "</s>")),
                                                            ("<s>", special_id(tokenizer, "<s>")))
    return tokenizer


def build_split_behaviors(texts, lines):
    """Each Split behavior once, a String pattern, an inverted pattern, WhitespaceSplit, NFKD."""
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split("-", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[.,;:!?]"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"'"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"[^aeiou]+"), behavior="isolated", invert=True),
    ])
    tokenizer = train({"normalizer": normalizers.NFKD(), "pre_tokenizer": pre, "unk_token": "<unk>"}, texts, 600,
                      byte_level=False, limit_alphabet=100)
    tokenizer.decoder = decoders.Sequence([decoders.Replace(Regex(r"[aeiou]"), "*"),
                                           decoders.Strip(content="*", left=0, right=1), decoders.Fuse()])
    return tokenizer


def build_byte_level_prefix(texts, lines):
    """GPT-2 / RoBERTa: ByteLevel with its own regex and add_prefix_space."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tokenizer = train({"pre_tokenizer": pre}, texts, 900, byte_level=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A <|end_of_text|>", pair="$A $B",
        special_tokens=[(t, special_id(tokenizer, t)) for t in ("<|begin_of_text|>", "<|end_of_text|>")])
    return tokenizer


# Kinds whose file keeps its merges as "a b" strings, the older form (SmolLM2's own file uses it);
# `tokenizers` itself saves [a, b] pairs.
STRING_MERGES = {"smollm2"}

# Kinds saved with a tokenizer_config.json beside them (what transformers reads on top of tokenizers).
CONFIGS = {"word_splits": {"clean_up_tokenization_spaces": True}}

KINDS = {
    "llama3": build_llama3,
    "qwen2": build_qwen2,
    "smollm2": build_smollm2,
    "llama2_legacy": build_llama2_legacy,
    "llama2_metaspace": build_llama2_metaspace,
    "metaspace_split": build_metaspace_split,
    "word_splits": build_word_splits,
    "split_behaviors": build_split_behaviors,
    "byte_level_prefix": build_byte_level_prefix,
}


def clean_up_tokenization(text):
    """transformers' PreTrainedTokenizerBase.clean_up_tokenization, which its decode applies after
    tokenizers' when tokenizer_config.json sets clean_up_tokenization_spaces."""
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
            .replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve")
            .replace(" 're", "'re"))


def expectations(tokenizer, lines, config=None, seed=7):
    """What transformers gives for `lines` with `tokenizer` and the tokenizer_config.json `config`
    (only clean_up_tokenization_spaces matters here)."""
    clean_up = (config or {}).get("clean_up_tokenization_spaces", False)

    def decode(ids, skip_special_tokens):
        text = tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        return clean_up_tokenization(text) if clean_up else text

    out = {"lines": []}
    for text in lines:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        out["lines"].append({
            "text": text,
            "ids": ids,
            "ids_with_special_tokens": tokenizer.encode(text, add_special_tokens=True).ids,
            "decoded": decode(ids, True),
            "decoded_with_special_tokens": decode(ids, False),
        })
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    rng = random.Random(seed)
    out["decode_cases"] = []
    for _ in range(200):
        ids = [rng.randrange(size) for _ in range(rng.randrange(1, 12))]
        ids = [i for i in ids if tokenizer.id_to_token(i) is not None]
        out["decode_cases"].append({"ids": ids, "decoded": decode(ids, True),
                                    "decoded_with_special_tokens": decode(ids, False)})
    out["token_to_id"] = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is not None}
    out["vocab_size"] = size
    added = tokenizer.get_added_tokens_decoder()
    out["special_tokens"] = sorted(t.content for t in added.values() if t.special)
    return out


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False)


def read_lines(corpus_file):
    with open(corpus_file, encoding="utf-8") as f:
        return json.load(f)["lines"]


def main(argv):
    if len(argv) >= 4 and argv[1] == "build":
        out_dir, lines = argv[2], read_lines(argv[3])
        names = argv[4:] or list(KINDS)
        unknown = [name for name in names if name not in KINDS]
        if unknown:
            sys.stderr.write("unknown kinds %s (known: %s)\n" % (unknown, ", ".join(KINDS)))
            return 2
        texts = generated_corpus() + lines
        for name in names:
            tokenizer = KINDS[name](texts, lines)
            os.makedirs(os.path.join(out_dir, name), exist_ok=True)
            file = os.path.join(out_dir, name, "tokenizer.json")
            tokenizer.save(file)
            if name in STRING_MERGES:
                with open(file, encoding="utf-8") as f:
                    spec = json.load(f)
                spec["model"]["merges"] = [" ".join(pair) for pair in spec["model"]["merges"]]
                write_json(file, spec)
            config = CONFIGS.get(name)
            if config is not None:
                write_json(os.path.join(out_dir, name, "tokenizer_config.json"), config)
            # Expectations come from the saved file, as the C++ side reads it.
            saved = Tokenizer.from_file(file)
            write_json(os.path.join(out_dir, name, "expected.json"), expectations(saved, lines, config))
        return 0
    if len(argv) == 5 and argv[1] == "expect":
        config_file = os.path.join(os.path.dirname(argv[2]), "tokenizer_config.json")
        config = None
        if os.path.exists(config_file):
            with open(config_file, encoding="utf-8") as f:
                config = json.load(f)
        write_json(argv[4], expectations(Tokenizer.from_file(argv[2]), read_lines(argv[3]), config))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
