"""The DPO golden fixture: the book's compute_logprobs and compute_dpo_loss (chapter 7 bonus) in
PyTorch, on the book's GPTModel with the weights of tests/fixtures/book-gpt-tiny, for a fixed
preference batch. Writes tests/fixtures/dpo-tiny/ (read by tests/dpo_golden.rs):

- batch.safetensors: chosen, rejected (I64 token ids, (3, 12)) and chosen_mask, rejected_mask
  (I64 0/1, the response tokens).
- expected.json: the DPO loss (β = 0.1), both rewards, and the four (3,) log-probability vectors.
- grads.safetensors: the gradient of the loss with respect to every policy parameter.

The policy has the fixture's weights; the reference has them all scaled by 0.9 (so policy and
reference differ and the loss is not ln 2). float32 on CPU, one thread, deterministic.

Setup once: python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch safetensors
Run from the repository root: /tmp/torchenv/bin/python benches/reference/torch_dpo.py
"""

import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOK = os.path.join(ROOT, "tests", "fixtures", "book-gpt-tiny")
OUT = os.path.join(ROOT, "tests", "fixtures", "dpo-tiny")
BETA = 0.1


class MultiHeadAttention(nn.Module):
    def __init__(self, d, ctx, heads, qkv_bias):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.W_query = nn.Linear(d, d, bias=qkv_bias)
        self.W_key = nn.Linear(d, d, bias=qkv_bias)
        self.W_value = nn.Linear(d, d, bias=qkv_bias)
        self.out_proj = nn.Linear(d, d)
        self.register_buffer("mask", torch.triu(torch.ones(ctx, ctx), diagonal=1), persistent=False)

    def forward(self, x):
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.W_query(x)), split(self.W_key(x)), split(self.W_value(x))
        scores = (q @ k.transpose(2, 3)).masked_fill(self.mask.bool()[:t, :t], -torch.inf)
        weights = torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).contiguous().view(b, t, d))


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
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["emb_dim"]
        self.att = MultiHeadAttention(d, cfg["context_length"], cfg["n_heads"], cfg["qkv_bias"])
        self.ff = nn.Module()
        self.ff.layers = nn.Sequential(nn.Linear(d, 4 * d), GELU(), nn.Linear(4 * d, d))
        self.norm1, self.norm2 = LayerNorm(d), LayerNorm(d)

    def forward(self, x):
        x = x + self.att(self.norm1(x))
        return x + self.ff.layers(self.norm2(x))


class GPTModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.trf_blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(t))
        return self.out_head(self.final_norm(self.trf_blocks(x)))


def compute_logprobs(logits, labels, selection_mask=None):
    """The book's: mean log-probability of the selected next tokens."""
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1, :]
    log_probs = F.log_softmax(logits, dim=-1)
    selected = torch.gather(input=log_probs, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    if selection_mask is not None:
        mask = selection_mask[:, 1:].clone()
        selected = selected * mask
        return selected.sum(-1) / mask.sum(-1)
    return selected.mean(-1)


def compute_dpo_loss(pc, pr, rc, rr, beta):
    """The book's: −log σ(β((π_c − π_r) − (ρ_c − ρ_r))), and the two detached mean rewards."""
    logits = (pc - pr) - (rc - rr)
    losses = -F.logsigmoid(beta * logits)
    return losses.mean(), (pc - rc).detach().mean(), (pr - rr).detach().mean()


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    with open(os.path.join(BOOK, "config.json")) as f:
        cfg = json.load(f)
    weights = load_file(os.path.join(BOOK, "weights.safetensors"))
    policy, reference = GPTModel(cfg), GPTModel(cfg)
    policy.load_state_dict(weights)
    reference.load_state_dict({k: 0.9 * v for k, v in weights.items()})
    policy.eval()
    reference.eval()

    g = torch.Generator().manual_seed(7)
    b, t = 3, 12
    chosen = torch.randint(0, cfg["vocab_size"], (b, t), generator=g)
    rejected = torch.randint(0, cfg["vocab_size"], (b, t), generator=g)
    # Prompts of 3, 4 and 5 tokens; sequence lengths (the rest is padding, id 0).
    prompt = [3, 4, 5]
    chosen_len, rejected_len = [12, 10, 9], [11, 12, 8]
    pos = torch.arange(t)

    def masked(ids, lengths):
        mask = torch.stack([(pos >= p) & (pos < n) for p, n in zip(prompt, lengths)])
        ids = torch.where(pos.unsqueeze(0) < torch.tensor(lengths).unsqueeze(1), ids, 0)
        return ids, mask

    chosen, chosen_mask = masked(chosen, chosen_len)
    rejected, rejected_mask = masked(rejected, rejected_len)

    pc = compute_logprobs(policy(chosen), chosen, chosen_mask)
    pr = compute_logprobs(policy(rejected), rejected, rejected_mask)
    with torch.no_grad():
        rc = compute_logprobs(reference(chosen), chosen, chosen_mask)
        rr = compute_logprobs(reference(rejected), rejected, rejected_mask)
    loss, chosen_rewards, rejected_rewards = compute_dpo_loss(pc, pr, rc, rr, BETA)
    loss.backward()

    os.makedirs(OUT, exist_ok=True)
    save_file(
        {
            "chosen": chosen.contiguous(),
            "rejected": rejected.contiguous(),
            "chosen_mask": chosen_mask.long().contiguous(),
            "rejected_mask": rejected_mask.long().contiguous(),
        },
        os.path.join(OUT, "batch.safetensors"),
    )
    save_file(
        {n: p.grad.contiguous() for n, p in policy.named_parameters()},
        os.path.join(OUT, "grads.safetensors"),
    )
    expected = {
        "beta": BETA,
        "reference_scale": 0.9,
        "loss": loss.item(),
        "chosen_rewards": chosen_rewards.item(),
        "rejected_rewards": rejected_rewards.item(),
        "policy_chosen_logprobs": pc.tolist(),
        "policy_rejected_logprobs": pr.tolist(),
        "reference_chosen_logprobs": rc.tolist(),
        "reference_rejected_logprobs": rr.tolist(),
        "torch_version": torch.__version__,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
