#!/usr/bin/env python3
"""PyTorch reference for benches/ops.rs: the same shapes, timed the same way (median of N runs).

Setup once: python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
Run:        /tmp/torchenv/bin/python benches/reference/torch_ops.py --threads 2
Prints one line per case: name, median ms, and GFLOP/s (matmul) or GB/s of input (fused ops).
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def bench(fn, reps):
    fn()
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    shapes = [
        ("fwd 512x768 @ 768x2304", 512, 768, 2304, False, False),
        ("dA  512x2304 @ (768x2304)T", 512, 2304, 768, False, True),
        ("dB  (512x768)T @ 512x2304", 768, 512, 2304, True, False),
        ("fwd 512x768 @ 768x50257", 512, 768, 50257, False, False),
        ("dA  512x50257 @ (768x50257)T", 512, 50257, 768, False, True),
        ("dB  (512x768)T @ 512x50257", 768, 512, 50257, True, False),
    ]
    with torch.no_grad():
        for label, m, k, n, ta, tb in shapes:
            a = torch.randn(k, m) if ta else torch.randn(m, k)
            b = torch.randn(n, k) if tb else torch.randn(k, n)
            a_op = a.t() if ta else a
            b_op = b.t() if tb else b
            t = bench(lambda: a_op @ b_op, args.reps)
            print(f"matmul {label:32s} {t*1e3:9.2f} ms {2*m*k*n/t/1e9:8.1f} GFLOP/s")

    B, T, C, H = 2, 256, 768, 12
    targets = torch.tensor([(i * 7919) % 50257 for i in range(B * T)]).view(B, T)

    def layer_norm(x, s, b):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return s * (x - mean) / torch.sqrt(var + 1e-5) + b

    cases = [
        ("softmax (2,12,256,256)", [torch.randn(B, H, T, T)], lambda x: torch.softmax(x[0], -1)),
        ("layer_norm book (2,256,768)", [torch.randn(B, T, C), torch.ones(C), torch.zeros(C)], lambda x: layer_norm(*x)),
        ("layer_norm fused F.layer_norm", [torch.randn(B, T, C), torch.ones(C), torch.zeros(C)],
         lambda x: F.layer_norm(x[0], (C,), x[1], x[2], 1e-5)),
        ("gelu tanh (2,256,3072)", [torch.randn(B, T, 4 * C)], lambda x: F.gelu(x[0], approximate="tanh")),
        ("cross_entropy (2,256,50257)", [torch.randn(B, T, 50257)],
         lambda x: F.cross_entropy(x[0].flatten(0, 1), targets.flatten())),
        ("attention (2,12,256,64) sdpa", [torch.randn(B, H, T, C // H) for _ in range(3)],
         lambda x: F.scaled_dot_product_attention(x[0], x[1], x[2], is_causal=True)),
    ]
    for label, xs, f in cases:
        nbytes = sum(x.numel() * 4 for x in xs)
        with torch.no_grad():
            t_fwd = bench(lambda: f(xs), args.reps)
        leaves = [x.clone().requires_grad_(True) for x in xs]

        def fb():
            for leaf in leaves:
                leaf.grad = None
            y = f(leaves)
            y.backward(torch.ones_like(y))

        t_fb = bench(fb, args.reps)
        print(f"fused  {label:32s} fwd {t_fwd*1e3:8.2f} ms  fwd+bwd {t_fb*1e3:8.2f} ms  {nbytes/t_fb/1e9:6.2f} GB/s")


if __name__ == "__main__":
    main()
