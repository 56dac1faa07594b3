#!/usr/bin/env python3
"""How far bf16 training arithmetic lands from fp32 on tests/gpu_model_test.cpp's shapes.

The GPU engine keeps bf16 weights and activations, multiplies with fp32 accumulation and keeps
fp32 LoRA master weights; its parity tests compare it with the fp32 CPU engine on the same
bf16-rounded weights. This script runs the same Llama shape and batch (hidden 128, ffn 256,
2 layers, 2 heads of 64, 1 KV head, vocab 300, LoRA r4 alpha 8 on every projection, 2 x 64 tokens)
in PyTorch on the CPU, once in fp32 and once in bf16, and prints how far the loss and the LoRA
gradients move: the floor under the tests' tolerances. Needs torch (Debian's python3-torch):

    /usr/bin/python3 tools/bf16_tolerance.py
"""
import math, torch
torch.manual_seed(0)
D, F, L, H, KV, HD, V, R, S = 128, 256, 2, 2, 1, 64, 300, 4, 2.0
B, T = 2, 64
def rnd(*shape, std=0.05): return (torch.randn(*shape) * std).to(torch.bfloat16).float()
W = {}
for l in range(L):
    W[l] = dict(q=rnd(H*HD, D), k=rnd(KV*HD, D), v=rnd(KV*HD, D), o=rnd(D, H*HD), gate=rnd(F, D), up=rnd(F, D), down=rnd(D, F))
emb, head = rnd(V, D), rnd(V, D)
lora = {}
for l in range(L):
    for p, w in W[l].items():
        out, inn = w.shape
        a = ((torch.rand(R, inn) * 2 - 1) / math.sqrt(inn)).to(torch.bfloat16).float()
        b = (torch.randn(out, R) * 0.05).to(torch.bfloat16).float()
        lora[(l, p)] = (a.requires_grad_(), b.requires_grad_())
ids = torch.randint(0, V, (B, T))
labels = ids.clone()
for r in range(B): labels[r, : 2 + 2 * r] = -100
inv = 1.0 / (10000 ** (torch.arange(0, HD, 2).double() / HD))
ang = torch.arange(T).double()[:, None] * inv[None]
cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
def rope(x, dt):  # x [B, T, h, HD]
    c, s = cos.to(dt)[None, :, None], sin.to(dt)[None, :, None]
    x1, x2 = x[..., : HD // 2], x[..., HD // 2 :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)
def norm(x): 
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype)
def run(dt):
    def lin(x, l, p):
        a, b = lora[(l, p)]
        return x @ W[l][p].to(dt).T + S * ((x @ a.to(dt).T) @ b.to(dt).T)
    x = emb.to(dt)[ids]
    for l in range(L):
        h = norm(x)
        q = rope(lin(h, l, 'q').view(B, T, H, HD), dt); k = rope(lin(h, l, 'k').view(B, T, KV, HD), dt)
        v = lin(h, l, 'v').view(B, T, KV, HD)
        k = k.repeat_interleave(H // KV, 2); v = v.repeat_interleave(H // KV, 2)
        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        sc = (qt.float() @ kt.float().transpose(-1, -2)) / math.sqrt(HD)
        sc = sc.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float('-inf'))
        att = torch.softmax(sc, -1).to(dt) @ vt
        x = x + lin(att.transpose(1, 2).reshape(B, T, H * HD), l, 'o')
        h = norm(x)
        x = x + lin(torch.nn.functional.silu(lin(h, l, 'gate')) * lin(h, l, 'up'), l, 'down')
    logits = (norm(x) @ head.to(dt).T).float()
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    for a, b in lora.values(): a.grad = b.grad = None
    loss.backward()
    return loss.item(), [t.grad.clone() for pair in lora.values() for t in pair]
l32, g32 = run(torch.float32)
l16, g16 = run(torch.bfloat16)
rel = [(x - y).norm().item() / y.norm().item() for x, y in zip(g16, g32)]
flat = lambda gs: torch.cat([g.flatten() for g in gs])
print(f"loss f32 {l32:.5f} bf16 {l16:.5f} rel {abs(l16 - l32) / l32:.2e}")
print(f"grads overall rel {(flat(g16) - flat(g32)).norm() / flat(g32).norm():.2e}, per tensor max {max(rel):.2e} median {sorted(rel)[len(rel)//2]:.2e}")
