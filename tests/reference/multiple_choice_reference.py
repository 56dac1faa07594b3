#!/usr/bin/python3
"""Independent reference of multiple-choice scoring as lm-evaluation-harness defines it.

What it is
    For each question of a JSONL file ({"question", "choices", "answer"}), the
    log-likelihood of every choice given the prompt, computed the way
    lm-evaluation-harness computes a `multiple_choice` task with its default
    layout, on the float64 PyTorch model of llama_reference.py (HF Llama + PEFT
    LoRA, written from the formulas):

      context       "Question: " + question + "\\nAnswer:"
      continuation  " " + choice                  (target_delimiter " ")
      tokens        lm-eval's _encode_pair: whitespace that ends the context
                    moves to the continuation; whole = encode(context +
                    continuation), context_enc = encode(context), and the
                    continuation's tokens are whole[len(context_enc):]. With a
                    BOS id, both encodings start with it (add_bos_token).
      truncation    lm-eval's _loglikelihood_tokens: the model reads
                    (context_enc + continuation_enc)[-(max_length + 1):][:-1]
                    and the continuation's log-probabilities come from its last
                    len(continuation_enc) positions. --max-len gives
                    max_length + 1, the longest sequence kept.
      score         the sum of the continuation tokens' log-softmax values
      acc pick      argmax of the scores (numpy: the first of ties)
      acc_norm pick argmax of score / len(choice) (Python's len of the choice
                    text: code points, without the leading space)

    Tokenization is HF `tokenizers` reading the tokenizer.json, so the prompt
    layout and the token ids are computed independently of the engine.

How the test suite uses it
    ~/.cache/fedengine/venv/bin/python tests/reference/multiple_choice_reference.py \\
        --model MODEL_DIR --adapter ADAPTER_DIR --tokenizer tokenizer.json \\
        --questions Q.jsonl --bos-id ID|-1 --max-len N --out OUT.json

    OUT.json: {"log_likelihoods": [[per choice] per question],
               "acc_pick": [...], "acc_norm_pick": [...],
               "choice_tokens": [[tokens scored per choice] per question]}
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_reference as ref  # noqa: E402


def encode_pair(tokenizer, bos, context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    prefix = [bos] if bos >= 0 else []
    whole = prefix + tokenizer.encode(context + continuation, add_special_tokens=False).ids
    context_enc = prefix + tokenizer.encode(context, add_special_tokens=False).ids
    return context_enc, whole[len(context_enc):]


def choice_log_likelihood(context_enc, continuation_enc, max_len, weights, cfg, lora_mods, scale):
    inp = (context_enc + continuation_enc)[-max_len:][:-1]
    ids = torch.tensor([inp], dtype=torch.long)
    logits = ref.forward(ids, weights, cfg, lora_mods, scale)[0]
    log_probs = torch.log_softmax(logits[-len(continuation_enc):], dim=-1)
    targets = torch.tensor(continuation_enc, dtype=torch.long)
    return float(log_probs.gather(1, targets[:, None]).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--bos-id", type=int, required=True)
    ap.add_argument("--max-len", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    cfg = ref.load_config(args.model)
    weights = ref.load_model_weights(args.model)
    scale, _, lora_mods = ref.load_adapter(args.adapter, cfg)
    tokenizer = Tokenizer.from_file(args.tokenizer)
    out = {"log_likelihoods": [], "acc_pick": [], "acc_norm_pick": [], "choice_tokens": []}
    with torch.no_grad(), open(args.questions, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            doc = json.loads(line)
            context = "Question: " + doc["question"] + "\nAnswer:"
            lls, counts = [], []
            for choice in doc["choices"]:
                context_enc, continuation_enc = encode_pair(tokenizer, args.bos_id, context, " " + choice)
                lls.append(choice_log_likelihood(context_enc, continuation_enc, args.max_len, weights, cfg,
                                                 lora_mods, scale))
                counts.append(len(continuation_enc))
            lengths = np.array([float(len(choice)) for choice in doc["choices"]])
            out["log_likelihoods"].append(lls)
            out["acc_pick"].append(int(np.argmax(lls)))
            out["acc_norm_pick"].append(int(np.argmax(np.array(lls) / lengths)))
            out["choice_tokens"].append(counts)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
