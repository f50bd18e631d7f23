#!/usr/bin/env python3
"""PyTorch reference for `scratchgpt bench train-step --device cuda` and `scratchgpt bench gpu-kernels`.

The book's GPTModel (chapter 4, as in ../shared/bench/torch_ch5.py: separate W_query/W_key/W_value,
masked softmax attention, custom LayerNorm and tanh-GELU), eager fp32 (TF32 off), AdamW(lr 4e-4,
wd 0.1), random token batches. Only the training step is timed (zero_grad, forward, loss, backward,
step), with torch.cuda.synchronize() around it. Also times fp32 matmuls and attention.

Usage: python3 torch_gpu_step.py --preset gpt2-small --context 1024 --batch-size 8 --steps 10
Prints one JSON object per measurement.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "gpt2-small": (768, 12, 12),
    "gpt2-medium": (1024, 24, 16),
    "small": (256, 4, 4),
}


class MultiHeadAttention(nn.Module):
    def __init__(self, d, ctx, dropout, heads, sdpa):
        super().__init__()
        self.d_out, self.num_heads, self.head_dim, self.sdpa = d, heads, d // heads, sdpa
        self.W_query = nn.Linear(d, d, bias=False)
        self.W_key = nn.Linear(d, d, bias=False)
        self.W_value = nn.Linear(d, d, bias=False)
        self.out_proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)
        self.p = dropout
        self.register_buffer("mask", torch.triu(torch.ones(ctx, ctx), diagonal=1))

    def forward(self, x):
        b, t, _ = x.shape
        split = lambda y: y.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.W_query(x)), split(self.W_key(x)), split(self.W_value(x))
        if self.sdpa:
            ctxv = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0, is_causal=True)
        else:
            s = q @ k.transpose(2, 3)
            s.masked_fill_(self.mask.bool()[:t, :t], -torch.inf)
            w = self.dropout(torch.softmax(s / k.shape[-1] ** 0.5, dim=-1))
            ctxv = w @ v
        return self.out_proj(ctxv.transpose(1, 2).reshape(b, t, self.d_out))


class LayerNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(d))
        self.shift = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class GELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))))


class Block(nn.Module):
    def __init__(self, d, ctx, heads, drop, sdpa):
        super().__init__()
        self.att = MultiHeadAttention(d, ctx, drop, heads, sdpa)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), GELU(), nn.Linear(4 * d, d))
        self.norm1, self.norm2 = LayerNorm(d), LayerNorm(d)
        self.drop_shortcut = nn.Dropout(drop)

    def forward(self, x):
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    def __init__(self, vocab, d, layers, heads, ctx, drop, sdpa):
        super().__init__()
        self.tok_emb, self.pos_emb = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.drop_emb = nn.Dropout(drop)
        self.trf_blocks = nn.Sequential(*[Block(d, ctx, heads, drop, sdpa) for _ in range(layers)])
        self.final_norm = LayerNorm(d)
        self.out_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.drop_emb(self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device)))
        return self.out_head(self.final_norm(self.trf_blocks(x)))


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], times[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="gpt2-small", choices=sorted(PRESETS))
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--drop-rate", type=float, default=0.1)
    ap.add_argument("--kernels", action="store_true", help="also time matmul and attention")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(123)
    dev = "cuda"
    d, layers, heads = PRESETS[a.preset]
    for sdpa in (False, True):
        model = GPTModel(50257, d, layers, heads, a.context, a.drop_rate, sdpa).to(dev)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        x = torch.randint(0, 50257, (a.batch_size, a.context), device=dev)
        y = torch.randint(0, 50257, (a.batch_size, a.context), device=dev)

        def step():
            opt.zero_grad()
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            loss.backward()
            opt.step()

        torch.cuda.reset_peak_memory_stats()
        med, mn = timed(step, a.steps)
        tokens = a.batch_size * a.context
        print(json.dumps({"what": "train_step", "attention": "sdpa" if sdpa else "book (masked softmax)",
                          "preset": a.preset, "context": a.context, "batch": a.batch_size,
                          "median_ms": med * 1e3, "min_ms": mn * 1e3, "tokens_per_s": tokens / med,
                          "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30,
                          "device": torch.cuda.get_device_name()}), flush=True)
        del model, opt
        torch.cuda.empty_cache()
    if a.kernels:
        for (m, n, k) in [(4096, 4096, 4096), (8192, 768, 768), (8192, 3072, 768), (8192, 50257, 768)]:
            A = torch.randn(m, k, device=dev)
            B = torch.randn(k, n, device=dev)
            med, _ = timed(lambda: A @ B, 10)
            print(json.dumps({"what": "matmul_fp32", "m": m, "n": n, "k": k, "median_ms": med * 1e3,
                              "tflops": 2 * m * n * k / med / 1e12}), flush=True)
        b, h, t, hd = 8, 12, 1024, 64
        q, k, v = (torch.randn(b, h, t, hd, device=dev) for _ in range(3))
        mask = torch.triu(torch.ones(t, t, device=dev, dtype=torch.bool), diagonal=1)

        def naive():
            s = (q @ k.transpose(2, 3)) / hd ** 0.5
            return torch.softmax(s.masked_fill(mask, -torch.inf), -1) @ v

        for name, fn in [("attention_torch_eager", naive),
                         ("attention_torch_sdpa", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))]:
            med, _ = timed(fn, 10)
            print(json.dumps({"what": name, "B": b, "H": h, "T": t, "D": hd, "median_ms": med * 1e3}), flush=True)


if __name__ == "__main__":
    main()
