#!/usr/bin/env python3
"""Eager PyTorch peers of two eetune workloads, for the side-by-side tokens/s of issue 10 (docs/benchmarks.md).

  pretrain  the `ee pretrain` step: byte-level Llama (vocab 258), dim 128, 8 layers, 4 heads, MLP 352, untied LM head,
            seq 256 x batch 16, full backward, global-norm clip 1.0, AdamW (0.9, 0.95).
  tune      the TuningStepBenchmark step: the 15M shape (dim 288, 6 layers, 6 heads, MLP 768, vocab 32000),
            `mlp` exits (EE-LLM's ExitMLP: the layer's post-attention norm of its attention residual, a SwiGLU branch
            added to that residual, RMSNorm, LM head) after layers 2 and 4, seq 256 x batch 8; the frozen backbone runs
            to layer 4 under no_grad, the heads forward and backward, AdamW on the heads.

What a PyTorch user would write: nn.Linear, F.scaled_dot_product_attention (causal; on PyTorch 1.x the explicit
masked softmax), F.cross_entropy, torch.optim.AdamW
(foreach), float32, eager (no torch.compile). Prints one line per repeat and the median:
    python3 bench/torch-peer.py pretrain --threads 2 --steps 20 --repeats 3
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, seq, theta=10000.0):
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(seq).float(), freqs)
    return angles.cos(), angles.sin()


def rope(x, cos, sin):  # x: (b, h, t, hd), pairs (2i, 2i+1) rotated as in llama2.c
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def causal_attention(q, k, v):
    """F.scaled_dot_product_attention (causal) where PyTorch has it (2.0+); else what a 1.13 user wrote (Debian
    bookworm's python3-torch is 1.13): scores, the causal mask, softmax, times v."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(mask, float("-inf")).softmax(-1) @ v


class SwiGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Layer(nn.Module):
    def __init__(self, dim, hidden, heads):
        super().__init__()
        self.heads = heads
        self.attention_norm = RMSNorm(dim)
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.ffn_norm = RMSNorm(dim)
        self.mlp = SwiGLU(dim, hidden)

    def attention_residual(self, x, cos, sin):
        b, t, d = x.shape
        h = self.attention_norm(x)
        q, k, v = (w(h).view(b, t, self.heads, d // self.heads).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        o = causal_attention(rope(q, cos, sin), rope(k, cos, sin), v)
        return x + self.wo(o.transpose(1, 2).reshape(b, t, d))

    def forward(self, x, cos, sin):
        r = self.attention_residual(x, cos, sin)
        return r + self.mlp(self.ffn_norm(r))


class Llama(nn.Module):
    def __init__(self, vocab, dim, hidden, layers, heads, seq):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(Layer(dim, hidden, heads) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        cos, sin = rope_tables(dim // heads, seq)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin)
        return self.lm_head(self.norm(x))


class MlpExit(nn.Module):
    """EE-LLM's ExitMLP on layer L, copy-initialised from layer L's MLP and the final norm and LM head."""

    def __init__(self, model, layer):
        super().__init__()
        src = model.layers[layer]
        self.ffn_norm = RMSNorm(src.ffn_norm.weight.numel())
        self.mlp = SwiGLU(src.mlp.w1.in_features, src.mlp.w1.out_features)
        self.norm = RMSNorm(model.norm.weight.numel())
        self.lm_head = nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=False)
        with torch.no_grad():
            self.ffn_norm.weight.copy_(src.ffn_norm.weight)
            self.norm.weight.copy_(model.norm.weight)
            self.lm_head.weight.copy_(model.lm_head.weight)
            for a, b in ((self.mlp.w1, src.mlp.w1), (self.mlp.w2, src.mlp.w2), (self.mlp.w3, src.mlp.w3)):
                a.weight.copy_(b.weight)

    def forward(self, attention_residual):
        r = attention_residual
        return self.lm_head(self.norm(r + self.mlp(self.ffn_norm(r))))


def pretrain_step(args):
    seq, batch, vocab = 256, 16, 258
    model = Llama(vocab, 128, 352, 8, 4, seq)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)

    def step():
        tokens = torch.randint(0, 256, (batch, seq + 1), generator=gen)
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step, batch * seq


def tune_step(args):
    seq, batch, vocab = 256, 8, 32000
    model = Llama(vocab, 288, 768, 6, 6, seq)
    model.requires_grad_(False)
    exits = [2, 4]
    heads = nn.ModuleList(MlpExit(model, e - 1) for e in exits)
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
    gen = torch.Generator().manual_seed(3)
    inputs = torch.randint(0, vocab, (batch, seq), generator=gen)
    targets = torch.randint(0, vocab, (batch * seq,), generator=gen)

    def step():
        residuals = []
        with torch.no_grad():  # the frozen backbone, to the last exit's layer
            x = model.embed(inputs)
            for i, layer in enumerate(model.layers[:max(exits)]):
                r = layer.attention_residual(x, model.cos, model.sin)
                if i + 1 in exits:
                    residuals.append(r)
                x = r + layer.mlp(layer.ffn_norm(r))
        loss = sum(F.cross_entropy(h(r).reshape(-1, vocab), targets) for h, r in zip(heads, residuals))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, batch * seq


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work", choices=["pretrain", "tune"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3, help="steps before timing")
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(7)
    step, tokens = {"pretrain": pretrain_step, "tune": tune_step}[args.work](args)
    for _ in range(args.warmup):
        step()
    rates = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        rate = args.steps * tokens / (time.perf_counter() - t0)
        rates.append(rate)
        print(f"torch {args.work} repeat {r + 1}: {rate:,.0f} tok/s", flush=True)
    print(f"torch {args.work} {torch.__version__} threads {args.threads}: median {statistics.median(rates):,.0f} "
          f"({min(rates):,.0f}..{max(rates):,.0f}) tok/s over {args.repeats} x {args.steps} steps")


if __name__ == "__main__":
    main()
