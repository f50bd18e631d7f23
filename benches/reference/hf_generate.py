"""transformers' side of `scratchgpt bench generate --cached-only` and `scratchgpt bench load`.

Greedy generation with the KV cache from a randomly initialised LlamaForCausalLM /
Qwen3ForCausalLM of a published model's shape (the same shapes as scratchgpt's presets
llama3.2-1b and qwen3-0.6b), float32, eager attention, `torch.set_num_threads` = the threads
scratchgpt uses; and the time and peak RSS of `from_pretrained` on a folder scratchgpt wrote
(`bench load --write llama3.2-1b`: BF16 shards, loaded as float32 as scratchgpt loads it).

    python hf_generate.py generate --preset qwen3-0.6b --tokens 32 --prompt 4 --threads 2
    python hf_generate.py load --dir /tmp/l1b --threads 2
"""

import argparse
import resource
import time

import torch
import transformers

PRESETS = {
    # (class, hidden, layers, heads, kv heads, head_dim, intermediate, vocab, theta, llama3 scaling, tied)
    "llama3.2-1b": ("llama", 2048, 16, 32, 8, 64, 8192, 128256, 500000.0, True, True),
    "qwen3-0.6b": ("qwen3", 1024, 28, 16, 8, 128, 3072, 151936, 1000000.0, False, True),
}


def config(name):
    fam, d, layers, heads, kv, hd, inter, vocab, theta, scaled, tied = PRESETS[name]
    common = dict(
        hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, head_dim=hd, intermediate_size=inter, vocab_size=vocab,
        rope_theta=theta, tie_word_embeddings=tied, max_position_embeddings=4096,
        attn_implementation="eager",
    )
    if fam == "llama":
        common["rope_scaling"] = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        return transformers.LlamaConfig(**common), transformers.LlamaForCausalLM
    common["rms_norm_eps"] = 1e-6
    return transformers.Qwen3Config(**common), transformers.Qwen3ForCausalLM


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)


def generate(a):
    cfg, cls = config(a.preset)
    t0 = time.perf_counter()
    with torch.no_grad():
        model = cls(cfg).eval()
    t_init = time.perf_counter() - t0
    prompt = torch.tensor([[6109, 3626, 6100, 345] * (a.prompt // 4 + 1)])[:, : a.prompt]
    with torch.no_grad():
        # Warm-up (allocations, kernel selection), then the timed run.
        model.generate(prompt, max_new_tokens=2, do_sample=False, use_cache=True, pad_token_id=0)
        t0 = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=a.tokens, min_new_tokens=a.tokens,
                             do_sample=False, use_cache=True, pad_token_id=0)
        secs = time.perf_counter() - t0
    n = out.shape[1] - prompt.shape[1]
    params = sum(p.numel() for p in model.parameters())
    print(f"transformers {transformers.__version__} {a.preset} ({params} parameters, random init "
          f"{t_init:.1f} s; {torch.get_num_threads()} threads), {a.prompt}-token prompt, {n} new "
          f"tokens: KV cache {n / secs:.2f} tokens/s ({secs * 1e3 / n:.0f} ms/token, prefill included)")


def load(a):
    before = peak_rss_gib()
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.float32)
    secs = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    print(f"transformers {transformers.__version__}: loaded {params} parameters "
          f"({params * 4 / (1 << 30):.2f} GiB as f32) in {secs:.1f} s: peak RSS "
          f"{peak_rss_gib():.2f} GiB ({before:.2f} GiB before loading)")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--preset", choices=sorted(PRESETS), default="qwen3-0.6b")
    g.add_argument("--tokens", type=int, default=32)
    g.add_argument("--prompt", type=int, default=4)
    g.add_argument("--threads", type=int, default=2)
    l = sub.add_parser("load")
    l.add_argument("--dir", required=True)
    l.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    {"generate": generate, "load": load}[a.cmd](a)


if __name__ == "__main__":
    main()
