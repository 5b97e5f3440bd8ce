#!/usr/bin/env python3
"""Generate PyTorch autograd + AdamW reference fixtures for a whole transformer block
(test/fixtures/train-parity/), used by test/train-parity.test.ts.

Usage (from the repo root, inside the venv made by scripts/py/setup-venv.sh):
    python scripts/py/gen_train_fixtures.py [--out DIR] [--no-verify]

The block is a plain-PyTorch pre-norm Llama/Qwen3-style block that matches the DSL's
TransformerBlock({hidden 32, heads 4, kvHeads 2, intermediate 64, qkvBias true,
qkNorm true, rope {theta 10000}}) called with positions 0..S-1 and causal=true:

    h   = x + self_attn(input_layernorm(x))
    out = h + mlp(post_attention_layernorm(h))
    RMSNorm(x) = x * rsqrt(mean(x^2, -1) + 1e-6) * weight
    self_attn: q/k/v_proj (bias) -> per-head q_norm/k_norm -> rotate_half RoPE
               -> causal GQA softmax attention (query head h uses kv head h // 2) -> o_proj (no bias)
    mlp:       down_proj(silu(gate_proj(x)) * up_proj(x))   (no biases)
    loss = mean((block(x) - y)^2)

Each step: loss.backward(); clip_grad_norm_(params, max_norm=0.5) (the pre-clip norm is
stored and always exceeds 0.5, so clipping is active); torch.optim.AdamW(lr=1e-2,
betas=(0.9, 0.95), eps=1e-8) with weight_decay=0.1 for the 2-D projection weights and a
weight_decay=0 group for the norm weights and the biases. Same batch every step.

Precision: params, x and y are drawn in float32; the block, the backward pass, the
clipping and AdamW all run in float64 from those values; results are stored as float32.

Unless --no-verify is given, the gradients are cross-checked against an independent
functional implementation (F.rms_norm, complex-number RoPE, F.scaled_dot_product_attention
with enable_gqa, torch.autograd.grad) and the optimizer states against a hand-written
AdamW; the script fails if they disagree.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_composite_fixtures import fmt, save_safetensors  # noqa: E402  (deterministic writer)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "test", "fixtures", "train-parity")

F64 = torch.float64
F32 = torch.float32

CFG = {
    "hidden": 32,
    "heads": 4,
    "kv_heads": 2,
    "head_dim": 8,
    "intermediate": 64,
    "rms_eps": 1e-6,
    "rope_theta": 10000.0,
    "batch": 2,
    "seq": 6,
}
OPT = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "max_norm": 0.5}
SEED = 0
# At t=1 AdamW moves every element by ~lr*sign(g), so a first-step gradient element within
# fp32 rounding noise of zero could legitimately flip sign in an fp32 implementation. Our fp32
# gradients differ from this float64 reference by <= ~6e-7 of each tensor's max |g|; require
# every first-step element to be >= 5e-6 of its tensor's max |g| (seed 0: 9.5e-6). Later
# steps divide accumulated moments, where a tiny g_t does not decide the sign.
MIN_REL_GRAD_STEP1 = 5e-6


# ----------------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(seq: int, dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=F64) / dim))
    freqs = torch.arange(seq, dtype=F64)[:, None] * inv  # [S, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [S, D]
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        H, KV, D, C = CFG["heads"], CFG["kv_heads"], CFG["head_dim"], CFG["hidden"]
        self.q_proj = nn.Linear(C, H * D, bias=True)
        self.k_proj = nn.Linear(C, KV * D, bias=True)
        self.v_proj = nn.Linear(C, KV * D, bias=True)
        self.o_proj = nn.Linear(H * D, C, bias=False)
        self.q_norm = RMSNorm(D, CFG["rms_eps"])
        self.k_norm = RMSNorm(D, CFG["rms_eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        H, KV, D = CFG["heads"], CFG["kv_heads"], CFG["head_dim"]
        q = self.q_norm(self.q_proj(x).view(B, S, H, D)).transpose(1, 2)  # [B,H,S,D]
        k = self.k_norm(self.k_proj(x).view(B, S, KV, D)).transpose(1, 2)
        v = self.v_proj(x).view(B, S, KV, D).transpose(1, 2)
        cos, sin = rope_cos_sin(S, D, CFG["rope_theta"], x.dtype)  # positions 0..S-1
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)  # query head h uses kv head h // (H/KV)
        v = v.repeat_interleave(H // KV, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        causal = torch.ones(S, S, dtype=torch.bool).tril()
        p = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        o = (p @ v).transpose(1, 2).reshape(B, S, H * D)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        C, I = CFG["hidden"], CFG["intermediate"]
        self.gate_proj = nn.Linear(C, I, bias=False)
        self.up_proj = nn.Linear(C, I, bias=False)
        self.down_proj = nn.Linear(I, C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm block; parameter names are the DSL's (= Hugging Face's within a layer)."""

    def __init__(self):
        super().__init__()
        self.input_layernorm = RMSNorm(CFG["hidden"], CFG["rms_eps"])
        self.self_attn = Attention()
        self.post_attention_layernorm = RMSNorm(CFG["hidden"], CFG["rms_eps"])
        self.mlp = MLP()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.self_attn(self.input_layernorm(x))
        return h + self.mlp(self.post_attention_layernorm(h))


def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).pow(2).mean()


def no_decay(name: str) -> bool:
    """torch-side param groups: norm weights and biases do not decay."""
    return name.endswith(".bias") or name.split(".")[-2].endswith("norm")


# ------------------------------------------------------------------------------ data


def draw_inputs() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """float32 params (declaration order), input x and target y, all from SEED."""
    torch.manual_seed(SEED)
    shapes = [(n, tuple(p.shape)) for n, p in Block().named_parameters()]
    torch.manual_seed(SEED)
    params = {}
    for n, shape in shapes:
        if n.endswith("norm.weight"):
            params[n] = (1.0 + 0.1 * torch.randn(shape, dtype=F32)).to(F32)
        else:
            params[n] = (0.2 * torch.randn(shape, dtype=F32)).to(F32)
    B, S, C = CFG["batch"], CFG["seq"], CFG["hidden"]
    x = torch.randn(B, S, C, dtype=F32)
    y = torch.randn(B, S, C, dtype=F32)
    return params, x, y


def train(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    """Run `steps` clipped AdamW steps in float64 on a fixed batch."""
    block = Block().to(F64)
    with torch.no_grad():
        for n, p in block.named_parameters():
            p.copy_(params[n].to(F64))
    named = list(block.named_parameters())
    groups = [
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": OPT["weight_decay"]},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"], foreach=False)
    xd, yd = x.to(F64), y.to(F64)
    losses, norms, grads = [], [], []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = loss_fn(block(xd), yd)
            loss.backward()
        grads.append({n: p.grad.detach().clone() for n, p in named})
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in named], max_norm=OPT["max_norm"])
        losses.append(loss.detach())
        norms.append(norm.detach())
        opt.step()
    return {
        "losses": torch.stack(losses),
        "norms": torch.stack(norms),
        "grads": grads,
        "params": {n: p.detach().clone() for n, p in named},
        "m": {n: opt.state[p]["exp_avg"].clone() for n, p in named},
        "v": {n: opt.state[p]["exp_avg_sq"].clone() for n, p in named},
    }


# ---------------------------------------------------------------- independent checks


def functional_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Same block via F.rms_norm, complex RoPE, F.scaled_dot_product_attention(enable_gqa)."""
    B, S, C = x.shape
    H, KV, D, eps = CFG["heads"], CFG["kv_heads"], CFG["head_dim"], CFG["rms_eps"]

    def rope(t: torch.Tensor) -> torch.Tensor:  # rotate_half == complex rotation of pairs (i, i + D/2)
        z = torch.complex(t[..., : D // 2], t[..., D // 2 :])
        ang = torch.arange(S, dtype=F64)[:, None] * CFG["rope_theta"] ** (-torch.arange(0, D, 2, dtype=F64) / D)
        z = z * torch.polar(torch.ones_like(ang), ang)
        return torch.cat((z.real, z.imag), dim=-1)

    def lin(t, n, bias=False):
        return torch.einsum("bsi,oi->bso", t, p[f"{n}.weight"]) + (p[f"{n}.bias"] if bias else 0)

    a = F.rms_norm(x, (C,), p["input_layernorm.weight"], eps)
    q = F.rms_norm(lin(a, "self_attn.q_proj", True).view(B, S, H, D), (D,), p["self_attn.q_norm.weight"], eps)
    k = F.rms_norm(lin(a, "self_attn.k_proj", True).view(B, S, KV, D), (D,), p["self_attn.k_norm.weight"], eps)
    v = lin(a, "self_attn.v_proj", True).view(B, S, KV, D)
    q, k, v = rope(q.transpose(1, 2)), rope(k.transpose(1, 2)), v.transpose(1, 2)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    h = x + lin(o.transpose(1, 2).reshape(B, S, H * D), "self_attn.o_proj")
    m = F.rms_norm(h, (C,), p["post_attention_layernorm.weight"], eps)
    out = h + lin(F.silu(lin(m, "mlp.gate_proj")) * lin(m, "mlp.up_proj"), "mlp.down_proj")
    return F.mse_loss(out, y)


def manual_adamw(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    p = {n: t.to(F64) for n, t in params.items()}
    m = {n: torch.zeros_like(t) for n, t in p.items()}
    v = {n: torch.zeros_like(t) for n, t in p.items()}
    b1, b2, lr, eps, wd = OPT["beta1"], OPT["beta2"], OPT["lr"], OPT["eps"], OPT["weight_decay"]
    losses, norms, grads = [], [], []
    for t in range(1, steps + 1):
        leaves = {n: u.clone().requires_grad_(True) for n, u in p.items()}
        with torch.enable_grad():
            loss = functional_loss(leaves, x.to(F64), y.to(F64))
            g = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
        norm = torch.sqrt(sum((gi * gi).sum() for gi in g.values()))
        coef = min(1.0, OPT["max_norm"] / (norm.item() + 1e-6))
        losses.append(loss.detach()), norms.append(norm), grads.append(g)
        for n in p:
            gi = g[n] * coef
            m[n] = b1 * m[n] + (1 - b1) * gi
            v[n] = b2 * v[n] + (1 - b2) * gi * gi
            upd = (m[n] / (1 - b1**t)) / ((v[n] / (1 - b2**t)).sqrt() + eps)
            p[n] = p[n] - lr * (upd + (0.0 if no_decay(n) else wd * p[n]))
    return {"losses": torch.stack(losses), "norms": torch.stack(norms), "grads": grads, "params": p, "m": m, "v": v}


def close(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float = 1e-10) -> None:
    err = (a - b).abs().max().item()
    scale = b.abs().max().item()
    if not err <= rtol * max(scale, 1e-30):
        raise SystemExit(f"VERIFY FAIL {what}: max abs diff {err:.3e} (scale {scale:.3e})")


# ------------------------------------------------------------------------------ main


def make_case(steps: int, verify: bool) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    params, x, y = draw_inputs()
    r = train(params, x, y, steps)
    norms = r["norms"].tolist()
    assert all(n > OPT["max_norm"] for n in norms), f"clipping must trigger at every step: grad norms {norms}"
    worst = min((g.abs().min() / g.abs().max()).item() for g in r["grads"][0].values())
    assert worst >= MIN_REL_GRAD_STEP1, f"a first-step gradient element is too close to 0 for an fp32 parity test ({worst:.2e}); pick another SEED"
    if verify:
        ref = manual_adamw(params, x, y, steps)
        close(r["losses"], ref["losses"], "loss")
        close(r["norms"], ref["norms"], "grad_norm")
        for t in range(steps):
            for n in params:
                close(r["grads"][t][n], ref["grads"][t][n], f"step {t + 1} grad.{n}", 1e-9)
        for n in params:
            for k in ("params", "m", "v"):
                close(r[k][n], ref[k][n], f"after {steps} steps {k}.{n}", 1e-9)

    out = lambda t: t.to(F32).contiguous()  # noqa: E731
    tensors: dict[str, torch.Tensor] = {"x": x, "y": y, **params}
    tensors["loss"] = out(r["losses"])
    tensors["grad_norm"] = out(r["norms"])
    if steps == 1:
        tensors.update({f"grad.{n}": out(g) for n, g in r["grads"][0].items()})
    for n in params:
        tensors[f"next.{n}"] = out(r["params"][n])
        tensors[f"next.adam.m.{n}"] = out(r["m"][n])
        tensors[f"next.adam.v.{n}"] = out(r["v"][n])
    meta: dict[str, object] = {**CFG, **OPT, "steps": steps, "seed": SEED}
    meta["grad_norm"] = ",".join(f"{n:.6f}" for n in norms)
    meta["loss"] = ",".join(f"{v:.6f}" for v in r["losses"].tolist())
    meta["decay_params"] = ",".join(n for n in params if not no_decay(n))
    meta["no_decay_params"] = ",".join(n for n in params if no_decay(n))
    meta["positions"] = "0..seq-1 (both batches)"
    meta["causal"] = True
    meta["loss_fn"] = "mean((block(x) - y)^2)"
    meta["compute"] = "float64 from the stored float32 params/x/y; stored as float32"
    meta["min_rel_grad_element_step1"] = f"{worst:.3e}"
    return tensors, meta


CASES = {"block_adamw_1step": 1, "block_adamw_3steps": 3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--no-verify", action="store_true", help="skip independent cross-checks")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)
    total = 0
    for name, steps in CASES.items():
        tensors, meta = make_case(steps, not args.no_verify)
        for tname, t in tensors.items():
            assert t.dtype == F32 and torch.isfinite(t).all(), (name, tname)
        metadata = {"case": name, "generator": "scripts/py/gen_train_fixtures.py"}
        metadata.update({k: fmt(v) for k, v in meta.items()})
        path = os.path.join(args.out, f"{name}.safetensors")
        save_safetensors(tensors, path, metadata)
        size = os.path.getsize(path)
        total += size
        print(f"wrote {os.path.relpath(path, REPO_ROOT)} ({size} B, {len(tensors)} tensors): loss {meta['loss']}, grad_norm {meta['grad_norm']}, step-1 min |g|/max|g| {meta['min_rel_grad_element_step1']}")
    print(f"total {total} bytes" + ("" if args.no_verify else "; all cross-checks passed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
