"""Peer for bench/train-step.ts: one training step of a DiT-like stack in PyTorch
eager fp32 (forward, MSE loss, backward, clip_grad_norm_, torch.optim.AdamW).

The stack is the DSL model of bench/train-step.ts written in plain PyTorch:
L pre-norm blocks (RMSNorm; attention with q/k/v/o projections without bias,
per-head RMSNorm of q and k, 2D RoPE: the head dim is split in two halves
rotated 'rotate_half'-style by the token's row and column on the grid,
bidirectional F.scaled_dot_product_attention; SwiGLU MLP), then RMSNorm and
Linear(hidden, hidden) with bias. loss = mean((model(x) - target)^2).
AdamW's weight decay applies to the params the TS side lists in the
safetensors metadata ("decay"; the 2-D weights), the others are in a
weight_decay=0 group. torch's defaults otherwise (on CPU: the for-loop AdamW).

Loads the initial params, x and target (names as in the DSL = Hugging Face)
from the safetensors file the TS side wrote, runs --warmup steps (reporting
the losses of steps 1 and 2 and the step-1 gradient norm so the TS side can
check both compute the same step), then serves stdin requests, one JSON line
each:
  run K          -> {"ms": [...]}   K timed steps
  matmul N R     -> {"gflops": ...} median of R N x N x N torch.mm
  mem            -> {"vmhwm_kb": ..., "vmrss_kb": ...}
  quit / EOF     -> exit

  .venv/bin/python bench/py/train_step_eager.py --weights FILE --serve [--threads 2] [--warmup 2] ...
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


def rope_tables(positions, dims, theta):
    """cos/sin [S, sum(dims)] per section: section j rotated by positions[j]"""
    cos, sin = [], []
    for pos, d in zip(positions, dims):
        inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
        ang = pos.float()[:, None] * inv[None, :]
        emb = torch.cat((ang, ang), dim=-1)
        cos.append(emb.cos())
        sin.append(emb.sin())
    return cos, sin


def apply_rope(x, cos, sin, dims):
    out = []
    for piece, c, s in zip(torch.split(x, dims, dim=-1), cos, sin):
        out.append(piece * c + rotate_half(piece) * s)
    return torch.cat(out, dim=-1)


class Attention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=False)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)

    def forward(self, x, cos, sin, dims):
        B, S, _ = x.shape
        H, D = self.heads, self.head_dim
        q = self.q_norm(self.q_proj(x).view(B, S, H, D)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, S, H, D)).transpose(1, 2)
        v = self.v_proj(x).view(B, S, H, D).transpose(1, 2)
        q = apply_rope(q, cos, sin, dims)
        k = apply_rope(k, cos, sin, dims)
        o = F.scaled_dot_product_attention(q, k, v)  # bidirectional
        return self.o_proj(o.transpose(1, 2).reshape(B, S, H * D))


class MLP(nn.Module):
    def __init__(self, hidden, intermediate):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, hidden, heads, intermediate):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden)
        self.self_attn = Attention(hidden, heads)
        self.post_attention_layernorm = RMSNorm(hidden)
        self.mlp = MLP(hidden, intermediate)

    def forward(self, x, cos, sin, dims):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, dims)
        return h + self.mlp(self.post_attention_layernorm(h))


class DiTStack(nn.Module):
    def __init__(self, layers, hidden, heads, intermediate, grid, theta):
        super().__init__()
        self.layers = nn.ModuleList([Block(hidden, heads, intermediate) for _ in range(layers)])
        self.norm_out = RMSNorm(hidden)
        self.proj_out = nn.Linear(hidden, hidden, bias=True)
        half = hidden // heads // 2
        self.dims = [half, half]
        self.grid, self.theta = grid, theta

    def forward(self, x):
        # 2D RoPE tables per forward, as our graph computes them (row, column of a row-major grid)
        gh, gw = self.grid
        idx = torch.arange(gh * gw)
        cos, sin = rope_tables([idx // gw, idx % gw], self.dims, self.theta)
        h = x
        for layer in self.layers:
            h = layer(h, cos, sin, self.dims)
        return self.proj_out(self.norm_out(h))


def proc_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=1536)
    ap.add_argument("--grid", default="16x16")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip-norm", type=float, default=1.0)
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    with safe_open(a.weights, "pt") as f:
        decay = set(json.loads(f.metadata()["decay"]))
    sd = load_file(a.weights)
    x = sd.pop("__x")
    target = sd.pop("__target")
    grid = tuple(int(v) for v in a.grid.split("x"))
    model = DiTStack(a.layers, a.hidden, a.heads, a.intermediate, grid, a.rope_theta).train()
    model.load_state_dict(sd, strict=True)
    del sd
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": a.weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    params = [p for _, p in named]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), target)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, a.clip_norm)
        opt.step()
        return loss.item(), gn.item()

    losses, gn1 = [], None
    for i in range(a.warmup):
        loss, gn = step()
        if i < 2:
            losses.append(loss)
        if i == 0:
            gn1 = gn

    def timed(k):
        ms = []
        for _ in range(k):
            t0 = time.perf_counter()
            step()
            ms.append((time.perf_counter() - t0) * 1000)
        return ms

    def matmul(n, runs):
        g = torch.Generator().manual_seed(0)
        A = torch.randn(n, n, generator=g)
        Bm = torch.randn(n, n, generator=g)
        A @ Bm
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            A @ Bm
            ts.append(time.perf_counter() - t0)
        return 2 * n**3 / statistics.median(ts) / 1e9

    out = lambda obj: (sys.stdout.write(json.dumps(obj) + "\n"), sys.stdout.flush())
    out({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(), "losses": losses, "grad_norm_1": gn1})
    if not a.serve:
        out({"ms": timed(5)})
        return
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            out({"ms": timed(int(cmd[1]))})
        elif cmd[0] == "matmul":
            out({"gflops": matmul(int(cmd[1]), int(cmd[2]))})
        elif cmd[0] == "mem":
            out({"vmhwm_kb": proc_status_kb("VmHWM"), "vmrss_kb": proc_status_kb("VmRSS")})


if __name__ == "__main__":
    main()
