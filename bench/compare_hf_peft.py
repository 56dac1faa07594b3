#!/usr/bin/env python3
"""LoRA training throughput of HF transformers + PEFT against fedengine, same shape, same run.

Times HF's LlamaForCausalLM (bf16 weights, SDPA attention, no KV cache) with a PEFT LoRA adapter
on the given projections and torch.optim.AdamW on the adapter, on random tokens: warm-up steps,
then timed steps with the device synchronised. With --fedengine it then runs fedengine's
end-to-end training benchmark on the same shape and prints both results and their ratio:

    python3 bench/compare_hf_peft.py --shape llama-1b --seq 2048 --batch 4 --rank 16 \
        --fedengine build/bench/bench_train

The fedengine binary is called with the same flags (--hidden, --layers, --heads, --kv-heads,
--ffn, --vocab, --seq, --batch, --rank, --alpha, --targets, --steps, --warmup) and must print one
JSON line with "tokens_per_s" and "peak_memory_bytes". Needs torch, transformers and peft (the
device machine has them); runs on the CPU too (--device cpu, f32) to check the script itself.
"""
import argparse
import json
import subprocess
import sys
import time

SHAPES = {  # Llama-style shapes; vocab 32000 (Llama 2's tokenizer)
    "llama-100m": dict(hidden=768, layers=12, heads=12, kv_heads=4, ffn=2048, vocab=32000),
    "llama-400m": dict(hidden=1024, layers=24, heads=16, kv_heads=8, ffn=2816, vocab=32000),
    "llama-1b": dict(hidden=2048, layers=16, heads=32, kv_heads=8, ffn=8192, vocab=32000),
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=320),
}
ALL_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="llama-1b")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4, help="sequences per optimizer step")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--targets", default=ALL_TARGETS, help="comma-separated projections")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--fedengine", help="fedengine's training benchmark binary, run on the same shape")
    return p.parse_args()


def time_hf_peft(args, shape):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    on_gpu = args.device.startswith("cuda")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    config = LlamaConfig(hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                         num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                         intermediate_size=shape["ffn"], vocab_size=shape["vocab"],
                         max_position_embeddings=max(args.seq, 2048), use_cache=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device=args.device, dtype=dtype)
    lora = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=args.targets.split(","),
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    for name, parameter in model.named_parameters():  # fp32 master weights for the adapter, as fedengine keeps
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    tokens = torch.randint(0, shape["vocab"], (args.batch, args.seq), device=args.device)

    def step():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=on_gpu):
            loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    def synchronise():
        if on_gpu:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    synchronise()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    synchronise()
    seconds = time.perf_counter() - start
    return {
        "tokens_per_s": args.batch * args.seq * args.steps / seconds,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if on_gpu else None,
        "final_loss": float(loss.detach()),
    }


def run_fedengine(args, shape):
    command = [args.fedengine, "--hidden", str(shape["hidden"]), "--layers", str(shape["layers"]),
               "--heads", str(shape["heads"]), "--kv-heads", str(shape["kv_heads"]), "--ffn", str(shape["ffn"]),
               "--vocab", str(shape["vocab"]), "--seq", str(args.seq), "--batch", str(args.batch),
               "--rank", str(args.rank), "--alpha", str(args.alpha), "--targets", args.targets,
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"{args.fedengine} printed no JSON line; its output:\n{output}")
    return json.loads(lines[-1])


def describe(name, result):
    memory = result.get("peak_memory_bytes")
    memory_text = f", peak memory {memory / 2**30:.2f} GiB" if memory else ""
    print(f"{name:>14}: {result['tokens_per_s']:.0f} tokens/s{memory_text}")


def main():
    args = parse_args()
    shape = SHAPES[args.shape]
    print(f"shape {args.shape} {shape}, seq {args.seq}, batch {args.batch}, LoRA r{args.rank} on {args.targets}, "
          f"{args.steps} timed steps on {args.device}")
    hf = time_hf_peft(args, shape)
    describe("HF + PEFT", hf)
    if not args.fedengine:
        return
    ours = run_fedengine(args, shape)
    describe("fedengine", ours)
    print(f"throughput ratio fedengine / HF+PEFT: {ours['tokens_per_s'] / hf['tokens_per_s']:.2f}x")
    if hf.get("peak_memory_bytes") and ours.get("peak_memory_bytes"):
        print(f"peak memory ratio fedengine / HF+PEFT: {ours['peak_memory_bytes'] / hf['peak_memory_bytes']:.2f}")


if __name__ == "__main__":
    main()
