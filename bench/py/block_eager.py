"""Peer for bench/block-forward.ts: PyTorch eager fp32 forward of one Llama-style
transformer block (RMSNorm, RoPE 'half', bidirectional SDPA, SwiGLU MLP, no
biases), written in plain PyTorch the way Hugging Face's eager/sdpa Llama path
computes it. Loads the parameters, the input x and our ORT output from the
safetensors file the TS side wrote (names as in Hugging Face), checks that the
outputs agree, then times forwards under torch.no_grad().

Prints one JSON line on stdout; with --serve, a ready line and then one line
per "run K" request read from stdin (bench/block-forward.ts interleaves these
with its own runs so both sides see the same machine load).

  .venv/bin/python bench/py/block_eager.py --weights FILE [--threads 2] [--runs 30] [--warmup 5] [--serve]
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


class Attention(nn.Module):
    def __init__(self, hidden, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
        self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x, cos, sin):
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.heads // self.kv_heads
        if g > 1:
            k = k.repeat_interleave(g, dim=1)
            v = v.repeat_interleave(g, dim=1)
        o = F.scaled_dot_product_attention(q, k, v)  # bidirectional, no mask
        return self.o_proj(o.transpose(1, 2).reshape(B, S, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, hidden, intermediate):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, hidden, heads, kv_heads, intermediate, rope_theta):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden)
        self.self_attn = Attention(hidden, heads, kv_heads)
        self.post_attention_layernorm = RMSNorm(hidden)
        self.mlp = MLP(hidden, intermediate)
        hd = hidden // heads
        self.register_buffer("inv_freq", 1.0 / rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd), persistent=False)

    def forward(self, x):
        # rotary tables computed per forward, as our graph does (positions 0..S-1)
        pos = torch.arange(x.shape[1], dtype=torch.float32)
        ang = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((ang, ang), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=1408)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--serve", action="store_true", help="interleaved mode: time 'run K' requests read from stdin")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    sd = load_file(a.weights)
    x = sd.pop("__x")
    y_ours = sd.pop("__y_ours")
    block = Block(a.hidden, a.heads, a.kv_heads, a.intermediate, a.rope_theta).eval()
    block.load_state_dict(sd, strict=True)

    def timed(k):
        ms = []
        with torch.no_grad():
            for _ in range(k):
                t0 = time.perf_counter()
                block(x)
                ms.append((time.perf_counter() - t0) * 1000)
        return ms

    with torch.no_grad():
        y = block(x)
    timed(a.warmup)
    check = {"max_abs_diff": (y - y_ours).abs().max().item(), "max_abs_ref": y.abs().max().item()}

    if a.serve:
        # interleaved mode: the TS side alternates its own runs with ours:
        # stdin "run K" -> one JSON line {"ms": [...]}; "quit" or EOF -> exit
        sys.stdout.write(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(), **check}) + "\n")
        sys.stdout.flush()
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            if cmd[0] == "run":
                sys.stdout.write(json.dumps({"ms": timed(int(cmd[1]))}) + "\n")
                sys.stdout.flush()
        return

    times = timed(a.runs)
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "runs": a.runs,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "all_ms": times,
        **check,
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
