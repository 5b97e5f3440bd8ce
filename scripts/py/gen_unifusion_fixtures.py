#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for the UniFusion modules (graphs/lap.ts,
graphs/refiner.ts, graphs/dit.ts, graphs/unifusion.ts) at the `tiny` preset, into
test/fixtures/unifusion/.

Usage (from the repo root, inside the venv made by scripts/py/setup-venv.sh):
    python scripts/py/gen_unifusion_fixtures.py [--out DIR] [--no-verify]

The model here is written in plain PyTorch from the paper and Krea 2's public
TextFusionTransformer / SingleStreamDiT semantics, with the same parameter names as
the DSL graphs (state_dict keys == our param names). Files:

  weights.safetensors  every parameter of every conditioning variant (their union);
                       random, none left at its zero init, so every path is exercised
  inputs.safetensors   hidden_states.0..4 [2,5,32], condition_mask BOOL [2,5] (batch 1:
                       last 2 tokens padding), key_states.i / value_states.i [2,1,5,16]
                       (i = 0..3), latents [2,4,8,6] (h=4, w=3), latents_small
                       [2,4,4,4], timestep [2]
  outputs.safetensors  velocity.<variant> and velocity.<variant>.small for the six
                       conditioning variants
  train.safetensors    the rectified-flow loss of the 'lap' variant on (x0, noise, t):
                       x_t = (1 - t) x0 + t noise, loss = mean((v(x_t, t) - (noise - x0))^2);
                       loss, grad_norm (global L2 norm of all gradients) and grad.<param>
                       for every 'lap' parameter

Conventions (as gen_composite_fixtures.py): torch.manual_seed(0); values drawn in
float32, the reference computed in float64 from them and stored as float32; metadata
holds the config (JSON) and the generator. Unless --no-verify, every output is
recomputed by a second implementation (F.scaled_dot_product_attention with a boolean
mask, F.rms_norm, complex-number RoPE, einsum pooling) and must agree to 1e-9.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_composite_fixtures import save_safetensors  # noqa: E402  (byte-deterministic writer)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "test", "fixtures", "unifusion")
F64, F32 = torch.float64, torch.float32

# graphs/presets.ts PRESETS.tiny (the test checks that these agree)
TINY = {
    "vlm": {"layers": 4, "hidden": 32, "heads": 2, "kvHeads": 1, "headDim": 16},
    "taps": [1, 2, 3, 4],
    "lap": {"heads": 2, "kvHeads": 1, "ffn": 64},
    "refiner": {"blocks": 2, "heads": 2, "ffn": 64},
    "dit": {"hidden": 32, "depth": 4, "heads": 2, "kvHeads": 1, "ffn": 64, "channels": 4, "patch": 2,
            "tdim": 32, "theta": 10000, "ropeAxes": [4, 6, 6], "gate": True},
}
EPS = 1e-5
VARIANTS = ["last-layer", "penultimate", "kv-fusion", "hsi", "lap", "lap-hsi"]

# switches for the cross-check implementation
ALT = {"on": False}


# ----------------------------------------------------------------------- building blocks


class ScaleRMSNorm(nn.Module):
    """Krea 2 RMSNorm: weight = 1 + scale."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        if ALT["on"]:
            return F.rms_norm(x, (x.shape[-1],), weight=1 + self.scale, eps=EPS)
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * (1 + self.scale)


class QKNorm(nn.Module):
    def __init__(self, hd: int):
        super().__init__()
        self.qnorm = ScaleRMSNorm(hd)
        self.knorm = ScaleRMSNorm(hd)


def attention_core(q, k, v, key_mask):
    """q [B,H,Sq,hd], k/v [B,KV,Sk,hd]; key_mask [B,Sk] bool (True = attend) or None."""
    H, KV = q.shape[1], k.shape[1]
    if ALT["on"]:
        mask = None if key_mask is None else key_mask[:, None, None, :]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=H != KV)
    k = k.repeat_interleave(H // KV, dim=1)
    v = v.repeat_interleave(H // KV, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.softmax(s, -1) @ v


class Attention(nn.Module):
    def __init__(self, dim, heads, kvheads, gate):
        super().__init__()
        self.heads, self.kvheads, self.hd = heads, kvheads, dim // heads
        self.wq = nn.Linear(dim, heads * self.hd, bias=False)
        self.wk = nn.Linear(dim, kvheads * self.hd, bias=False)
        self.wv = nn.Linear(dim, kvheads * self.hd, bias=False)
        if gate:
            self.gate = nn.Linear(dim, dim, bias=False)
        self.qknorm = QKNorm(self.hd)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x, key_mask=None, rotate=None, prefix=None):
        B, S, _ = x.shape
        q = self.wq(x).view(B, S, self.heads, self.hd).transpose(1, 2)
        k = self.wk(x).view(B, S, self.kvheads, self.hd).transpose(1, 2)
        v = self.wv(x).view(B, S, self.kvheads, self.hd).transpose(1, 2)
        q, k = self.qknorm.qnorm(q), self.qknorm.knorm(k)
        if rotate is not None:
            q, k = rotate(q), rotate(k)
        if prefix is not None:
            k = torch.cat((prefix[0], k), 2)
            v = torch.cat((prefix[1], v), 2)
        o = attention_core(q, k, v, key_mask).transpose(1, 2).reshape(B, S, -1)
        if hasattr(self, "gate"):
            o = o * torch.sigmoid(self.gate(x))
        return self.wo(o)


class SwiGLU(nn.Module):
    def __init__(self, dim, ffn):
        super().__init__()
        self.gate = nn.Linear(dim, ffn, bias=False)
        self.up = nn.Linear(dim, ffn, bias=False)
        self.down = nn.Linear(ffn, dim, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class FusionBlock(nn.Module):
    """Krea 2 TextFusionBlock: x + attn(prenorm x); x + mlp(postnorm x)."""

    def __init__(self, dim, heads, kvheads, ffn, gate=False):
        super().__init__()
        self.prenorm = ScaleRMSNorm(dim)
        self.postnorm = ScaleRMSNorm(dim)
        self.attn = Attention(dim, heads, kvheads, gate)
        self.mlp = SwiGLU(dim, ffn)

    def forward(self, x, key_mask=None):
        x = x + self.attn(self.prenorm(x), key_mask=key_mask)
        return x + self.mlp(self.postnorm(x))


class LAP(nn.Module):
    def __init__(self, n, dim, heads, kvheads, ffn):
        super().__init__()
        self.layerwise_blocks = nn.ModuleList([FusionBlock(dim, heads, kvheads, ffn) for _ in range(2)])
        self.projector = nn.Linear(n, 1, bias=False)

    def forward(self, taps):
        x = torch.stack(taps, 2)  # (bs, sl, n, hE)
        b, l, n, d = x.shape
        x = x.reshape(b * l, n, d)
        for blk in self.layerwise_blocks:
            x = blk(x)
        x = x.reshape(b, l, n, d)
        if ALT["on"]:
            return torch.einsum("blnd,n->bld", x, self.projector.weight[0])
        return self.projector(x.transpose(-1, -2)).squeeze(-1)


class Projection(nn.Module):
    """Krea 2 txtmlp: RMSNorm -> Linear -> GELU(tanh) -> Linear."""

    def __init__(self, din, dout):
        super().__init__()
        self.norm = ScaleRMSNorm(din)
        self.fc1 = nn.Linear(din, dout)
        self.fc2 = nn.Linear(dout, dout)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(self.norm(x)), approximate="tanh"))


class Refiner(nn.Module):
    def __init__(self, din, dout, blocks, heads, kvheads, ffn):
        super().__init__()
        self.blocks = nn.ModuleList([FusionBlock(din, heads, kvheads, ffn) for _ in range(blocks)])
        self.proj = Projection(din, dout)

    def forward(self, x, mask):
        for blk in self.blocks:
            x = blk(x, key_mask=mask)
        return self.proj(x)


class Injection(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        v, lp = cfg["vlm"], cfg["lap"]
        self.lap = LAP(len(cfg["taps"]), v["hidden"], lp["heads"], lp["kvHeads"], lp["ffn"])
        self.proj = Projection(v["hidden"], cfg["dit"]["hidden"])

    def forward(self, taps):
        return self.proj(self.lap(taps))


# ----------------------------------------------------------------------------- the DiT


def rope_interleaved(x, pos, theta):
    """x [..., S, d], pos [S]: pairs (x[2i], x[2i+1]) rotated by pos * theta^(-2i/d)."""
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=F64) / d)
    ang = pos.to(F64)[:, None] * inv  # [S, d/2]
    if ALT["on"]:
        z = torch.view_as_complex(x.reshape(*x.shape[:-1], d // 2, 2).contiguous())
        return torch.view_as_real(z * torch.polar(torch.ones_like(ang), ang)).reshape(x.shape)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = ang.cos(), ang.sin()
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).reshape(x.shape)


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=F64) / half)
    args = (1000.0 * t)[:, None] * freqs
    return torch.cat((args.cos(), args.sin()), -1)


class Modulation(nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.lin = nn.Parameter(torch.zeros(*shape))


class DiTBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        D = c["hidden"]
        self.mod = Modulation(6 * D)
        self.prenorm = ScaleRMSNorm(D)
        self.postnorm = ScaleRMSNorm(D)
        self.attn = Attention(D, c["heads"], c["kvHeads"], c["gate"])
        self.mlp = SwiGLU(D, c["ffn"])

    def forward(self, x, tvec, **attn):
        ps, pb, pg, qs, qb, qg = (tvec[:, None, :] + self.mod.lin).chunk(6, -1)
        x = x + pg * self.attn((1 + ps) * self.prenorm(x) + pb, **attn)
        return x + qg * self.mlp((1 + qs) * self.postnorm(x) + qb)


class TMLP(nn.Module):
    def __init__(self, tdim, D):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(tdim, D), nn.Linear(D, D)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class TProj(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.fc = nn.Linear(D, 6 * D)

    def forward(self, x):
        return self.fc(F.gelu(x, approximate="tanh"))


class LastLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, P = c["hidden"], c["channels"] * c["patch"] ** 2
        self.norm = ScaleRMSNorm(D)
        self.linear = nn.Linear(D, P)
        self.modulation = Modulation(2, D)

    def forward(self, x, temb):
        scale, shift = (temb[:, None, :] + self.modulation.lin).chunk(2, 1)
        return self.linear((1 + scale) * self.norm(x) + shift)


class DiT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        D, P = c["hidden"], c["channels"] * c["patch"] ** 2
        self.first = nn.Linear(P, D)
        self.tmlp = TMLP(c["tdim"], D)
        self.tproj = TProj(D)
        self.blocks = nn.ModuleList([DiTBlock(c) for _ in range(c["depth"])])
        self.last = LastLayer(c)

    def forward(self, latents, t, mask, tokens=None, inject=None, kv=None):
        c, p = self.c, self.c["patch"]
        B, C, H, W = latents.shape
        h, w = H // p, W // p
        img = latents.reshape(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p)
        img = self.first(img)
        temb = self.tmlp(timestep_embedding(t, c["tdim"]))
        tvec = self.tproj(temb)
        Sc, HW = mask.shape[1], h * w
        idx = torch.arange(HW)
        row, col = idx // w, idx % w
        in_seq = tokens is not None or inject is not None
        if in_seq:  # condition tokens: position 0 on every axis
            row = torch.cat((torch.zeros(Sc, dtype=torch.long), row))
            col = torch.cat((torch.zeros(Sc, dtype=torch.long), col))
        a0, a1, a2 = c["ropeAxes"]

        def rotate(x):  # frame axis (a0 dims) is 0 for every token: unrotated
            return torch.cat((x[..., :a0], rope_interleaved(x[..., a0:a0 + a1], row, c["theta"]),
                              rope_interleaved(x[..., a0 + a1:], col, c["theta"])), -1)

        key_mask = torch.cat((mask, torch.ones(B, HW, dtype=torch.bool)), 1)
        if inject is not None:
            cond, x = tokens, img
            for i, blk in enumerate(self.blocks):
                cond = inject(i) if cond is None else cond + inject(i)
                s = blk(torch.cat((cond, x), 1), tvec, key_mask=key_mask, rotate=rotate)
                cond, x = s[:, :Sc], s[:, Sc:]
        else:
            s = img if tokens is None else torch.cat((tokens, img), 1)
            for i, blk in enumerate(self.blocks):
                s = blk(s, tvec, key_mask=key_mask, rotate=rotate, prefix=None if kv is None else kv(i))
            x = s if tokens is None else s[:, Sc:]
        out = self.last(x, temb)
        return out.reshape(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


class UniFusion(nn.Module):
    def __init__(self, cfg, variant):
        super().__init__()
        self.cfg, self.variant = cfg, variant
        v, lp, rf, dt = cfg["vlm"], cfg["lap"], cfg["refiner"], cfg["dit"]
        if variant == "lap":
            self.lap = LAP(len(cfg["taps"]), v["hidden"], lp["heads"], lp["kvHeads"], lp["ffn"])
        if variant in ("lap", "last-layer", "penultimate"):
            self.refiner = Refiner(v["hidden"], dt["hidden"], rf["blocks"], rf["heads"], rf.get("kvHeads", rf["heads"]), rf["ffn"])
        if variant == "lap-hsi":
            self.injections = nn.ModuleList([Injection(cfg) for _ in range(dt["depth"])])
        self.dit = DiT(dt)

    def forward(self, hs, mask, kv, latents, t):
        L, taps, var = self.cfg["vlm"]["layers"], self.cfg["taps"], self.variant
        if var in ("last-layer", "penultimate"):
            tok = self.refiner(hs[L if var == "last-layer" else L - 1], mask)
            return self.dit(latents, t, mask, tokens=tok)
        if var == "lap":
            return self.dit(latents, t, mask, tokens=self.refiner(self.lap([hs[i] for i in taps]), mask))
        if var == "lap-hsi":
            tp = [hs[i] for i in taps]
            return self.dit(latents, t, mask, inject=lambda i: self.injections[i](tp))
        if var == "hsi":
            return self.dit(latents, t, mask, inject=lambda i: hs[i])
        return self.dit(latents, t, mask, kv=lambda i: kv[i])


# ------------------------------------------------------------------------------- data


def randomize(model: nn.Module) -> None:
    """Overwrite every parameter (zero inits included) with seeded random fp32 values:
    linears N(0, 1/fan_in) (biases 0.3 N), norm scales and modulation tables 0.3 N, the
    LAP pooling weight 1/n + 0.3 N."""
    for name, p in model.named_parameters():
        if name.endswith(".scale") or name.endswith(".lin") or name.endswith(".bias"):
            val = 0.3 * torch.randn(p.shape, dtype=F32)
        elif name.endswith("projector.weight"):
            val = 1.0 / p.shape[1] + 0.3 * torch.randn(p.shape, dtype=F32)
        else:
            val = torch.randn(p.shape, dtype=F32) / math.sqrt(p.shape[1])
        with torch.no_grad():
            p.copy_(val)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--no-verify", action="store_true", help="skip the cross-check implementation")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    cfg = TINY
    v = cfg["vlm"]
    L, hE, KV, hd = v["layers"], v["hidden"], v["kvHeads"], v["headDim"]
    B, S, C = 2, 5, cfg["dit"]["channels"]

    # one model per variant; shared names get one value (the union of all params)
    weights: dict[str, torch.Tensor] = {}
    models = {}
    for var in VARIANTS:
        m = UniFusion(cfg, var)
        randomize(m)
        for n, p in m.named_parameters():
            if n in weights:
                with torch.no_grad():
                    p.copy_(weights[n])
            else:
                weights[n] = p.detach().clone()
        models[var] = m.to(F64)

    # inputs: hidden states growing with depth as in real VLMs; batch 1 padded at the end
    inputs: dict[str, torch.Tensor] = {}
    for i in range(L + 1):
        inputs[f"hidden_states.{i}"] = (torch.randn(B, S, hE, dtype=F32) * (1 + i)).to(F32)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 3:] = False
    inputs["condition_mask"] = mask
    for i in range(L):
        inputs[f"key_states.{i}"] = torch.randn(B, KV, S, hd, dtype=F32)
        inputs[f"value_states.{i}"] = torch.randn(B, KV, S, hd, dtype=F32)
    inputs["latents"] = torch.randn(B, C, 8, 6, dtype=F32)
    inputs["latents_small"] = torch.randn(B, C, 4, 4, dtype=F32)
    inputs["timestep"] = torch.tensor([0.3, 0.85], dtype=F32)

    d = {k: (t.to(F64) if t.dtype == F32 else t) for k, t in inputs.items()}
    hs = [d[f"hidden_states.{i}"] for i in range(L + 1)]
    kv = [(d[f"key_states.{i}"], d[f"value_states.{i}"]) for i in range(L)]

    def run_all():
        out = {}
        with torch.no_grad():
            for var, m in models.items():
                out[f"velocity.{var}"] = m(hs, mask, kv, d["latents"], d["timestep"])
                out[f"velocity.{var}.small"] = m(hs, mask, kv, d["latents_small"], d["timestep"])
        return out

    outputs = run_all()
    if not args.no_verify:
        ALT["on"] = True
        alt = run_all()
        ALT["on"] = False
        for k, ref in outputs.items():
            err = (alt[k] - ref).abs().max().item()
            if not err <= 1e-9 * max(1.0, ref.abs().max().item()):
                print(f"VERIFY FAIL {k}: max abs diff {err:.3e}", file=sys.stderr)
                return 1

    # the rectified-flow loss and its gradients for the default variant
    x0 = torch.randn(B, C, 8, 6, dtype=F32)
    noise = torch.randn(B, C, 8, 6, dtype=F32)
    tt = torch.tensor([0.2, 0.7], dtype=F32)
    m = models["lap"]
    x0d, nd, td = x0.to(F64), noise.to(F64), tt.to(F64)
    tb = td[:, None, None, None]
    xt = (1 - tb) * x0d + tb * nd
    loss = (m(hs, mask, kv, xt, td) - (nd - x0d)).pow(2).mean()
    m.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
    gnorm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
    train = {"x0": x0, "noise": noise, "timestep": tt, "loss": loss.detach().reshape(1).to(F32), "grad_norm": gnorm.reshape(1).to(F32)}
    for n, g in grads.items():
        train[f"grad.{n}"] = g.to(F32)

    meta = {
        "generator": "scripts/py/gen_unifusion_fixtures.py",
        "preset": "tiny",
        "config": json.dumps(cfg, sort_keys=True),
        "variants": ",".join(VARIANTS),
        "rms_eps": repr(EPS),
    }
    files = {
        "weights": ({k: weights[k] for k in sorted(weights)}, {**meta, "params": str(len(weights))}),
        "inputs": (inputs, meta),
        "outputs": ({k: t.to(F32).contiguous() for k, t in outputs.items()}, meta),
        "train": (train, {**meta, "variant": "lap", "loss": "mean((v(x_t, t) - (noise - x0))^2), x_t = (1 - t) x0 + t noise"}),
    }
    total = 0
    for name, (tensors, md) in files.items():
        for k, t in tensors.items():
            if t.dtype == F32:
                assert torch.isfinite(t).all(), (name, k)
        path = os.path.join(args.out, f"{name}.safetensors")
        save_safetensors(tensors, path, md)
        total += os.path.getsize(path)
        print(f"wrote {os.path.relpath(path, REPO_ROOT)} ({os.path.getsize(path)} B, {len(tensors)} tensors)")
    print(f"total {total} bytes; loss {loss.item():.6f}, grad_norm {gnorm.item():.6f}"
          + ("" if args.no_verify else "; cross-checks passed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
