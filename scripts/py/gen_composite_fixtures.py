#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for composite ops (norms, conv, activations,
RoPE, attention) as safetensors files in test/fixtures/composites/.

Usage (from the repo root, inside the venv made by scripts/py/setup-venv.sh):
    python scripts/py/gen_composite_fixtures.py [--out DIR] [--no-verify]

Conventions (see test/fixtures/composites/README.md):
  * every case calls torch.manual_seed(0) before drawing its tensors, so each file
    is reproducible independently of the other cases;
  * inputs ~ N(0, 1) (never zeros), weights ~ 0.5 * N(0, 1), norm weights
    1 + 0.3 * N(0, 1), biases 0.5 * N(0, 1);
  * all inputs/weights are drawn (or cast) to float32 first; the reference is then
    computed in float64 from those float32 values, and stored as float32;
  * __metadata__ holds the case config as strings.

Unless --no-verify is given, every reference is also cross-checked against an
independent torch implementation (F.rms_norm, F.scaled_dot_product_attention,
complex-number RoPE, ...) and the script fails if they disagree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "test", "fixtures", "composites")

F64 = torch.float64
F32 = torch.float32


# --------------------------------------------------------------------------- helpers


def randn(*shape: int) -> torch.Tensor:
    """Random normal input, float32."""
    return torch.randn(*shape, dtype=F32)


def weight(*shape: int, std: float = 0.5) -> torch.Tensor:
    return (torch.randn(*shape, dtype=F32) * std).to(F32)


def norm_weight(n: int) -> torch.Tensor:
    return (1.0 + 0.3 * torch.randn(n, dtype=F32)).to(F32)


def d(t: torch.Tensor) -> torch.Tensor:
    """float32 tensor -> float64 copy used for the reference computation."""
    assert t.dtype == F32, t.dtype
    return t.to(F64)


def out32(t: torch.Tensor) -> torch.Tensor:
    assert t.dtype == F64, t.dtype
    return t.to(F32).contiguous()


# ------------------------------------------------------------------ reference formulas
# All of these operate on float64 tensors.


def rmsnorm_ref(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def inv_freq(dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=F64) / dim))


def rope_half_ref(q: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """HF Llama rotate_half RoPE. q [B,H,S,D] float64, pos [B,S] int."""
    dim = q.shape[-1]
    freqs = pos.to(F64)[..., None] * inv_freq(dim, theta)  # [B,S,D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [B,S,D]
    cos = emb.cos()[:, None]  # broadcast over heads
    sin = emb.sin()[:, None]
    return q * cos + rotate_half(q) * sin


def rope_interleaved_ref(q: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """GPT-J / FLUX interleaved-pair RoPE. q [B,H,S,D] float64, pos [B,S] int."""
    dim = q.shape[-1]
    ang = pos.to(F64)[..., None] * inv_freq(dim, theta)  # [B,S,D/2]
    cos = ang.cos()[:, None]
    sin = ang.sin()[:, None]
    x0 = q[..., 0::2]
    x1 = q[..., 1::2]
    out = torch.empty_like(q)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def sdpa_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    key_mask: torch.Tensor | None,
) -> torch.Tensor:
    """q [B,H,Sq,D], k/v [B,KV,Sk,D] (float64); key_mask [B,Sk] bool, True = attend.
    Query head h uses kv head h // (H // KV)."""
    B, H, Sq, D = q.shape
    KV, Sk = k.shape[1], k.shape[2]
    rep = H // KV
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(D))  # [B,H,Sq,Sk]
    allowed = torch.ones(B, 1, Sq, Sk, dtype=torch.bool)
    if causal:
        allowed = allowed & torch.ones(Sq, Sk, dtype=torch.bool).tril()
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    assert allowed.any(-1).all(), "a query row is fully masked"
    scores = scores.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    return p @ v


# ----------------------------------------------------------------------------- cases

CASES = {}


def case(fn):
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


@case
def case_rmsnorm():
    eps = 1e-6
    x, w = randn(2, 5, 16), norm_weight(16)
    y = rmsnorm_ref(d(x), d(w), eps)
    check = lambda: F.rms_norm(d(x), (16,), d(w), eps)
    return {"x": x, "weight": w, "y": out32(y)}, {"eps": eps}, [("y", y, check)]


@case
def case_layernorm():
    eps = 1e-5
    x, w, b = randn(2, 5, 16), norm_weight(16), weight(16)
    y = F.layer_norm(d(x), (16,), d(w), d(b), eps)

    def check():
        xd = d(x)
        mu = xd.mean(-1, keepdim=True)
        var = (xd - mu).pow(2).mean(-1, keepdim=True)
        return (xd - mu) / torch.sqrt(var + eps) * d(w) + d(b)

    return {"x": x, "weight": w, "bias": b, "y": out32(y)}, {"eps": eps}, [("y", y, check)]


@case
def case_groupnorm():
    eps, groups = 1e-6, 4
    x, w, b = randn(2, 8, 5, 6), norm_weight(8), weight(8)
    y = F.group_norm(d(x), groups, d(w), d(b), eps)

    def check():
        xd = d(x).reshape(2, groups, -1)
        mu = xd.mean(-1, keepdim=True)
        var = (xd - mu).pow(2).mean(-1, keepdim=True)
        xn = ((xd - mu) / torch.sqrt(var + eps)).reshape(2, 8, 5, 6)
        return xn * d(w)[None, :, None, None] + d(b)[None, :, None, None]

    return (
        {"x": x, "weight": w, "bias": b, "y": out32(y)},
        {"eps": eps, "groups": groups},
        [("y", y, check)],
    )


def _conv(cout: int, stride: int, padding: int):
    x, w, b = randn(2, 3, 9, 10), weight(cout, 3, 3, 3), weight(cout)
    y = F.conv2d(d(x), d(w), d(b), stride=stride, padding=padding)

    def check():  # explicit im2col-free loop formulation
        xp = F.pad(d(x), (padding,) * 4)
        N, C, Hp, Wp = xp.shape
        Ho, Wo = (Hp - 3) // stride + 1, (Wp - 3) // stride + 1
        out = torch.zeros(N, cout, Ho, Wo, dtype=F64)
        for i in range(3):
            for j in range(3):
                patch = xp[:, :, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride]
                out += torch.einsum("nchw,oc->nohw", patch, d(w)[:, :, i, j])
        return out + d(b)[None, :, None, None]

    return (
        {"x": x, "weight": w, "bias": b, "y": out32(y)},
        {"stride": stride, "padding": padding, "kernel_size": 3},
        [("y", y, check)],
    )


@case
def case_conv2d_s1p1():
    return _conv(4, 1, 1)


@case
def case_conv2d_s2p0():
    return _conv(5, 2, 0)


@case
def case_gelu():
    x = randn(3, 17)
    xd = d(x)
    y_erf = F.gelu(xd)
    y_tanh = F.gelu(xd, approximate="tanh")
    y_silu = F.silu(xd)
    checks = [
        ("y_erf", y_erf, lambda: 0.5 * xd * (1 + torch.erf(xd / math.sqrt(2)))),
        (
            "y_tanh",
            y_tanh,
            lambda: 0.5 * xd * (1 + torch.tanh(math.sqrt(2 / math.pi) * (xd + 0.044715 * xd**3))),
        ),
        ("y_silu", y_silu, lambda: xd / (1 + torch.exp(-xd))),
    ]
    return (
        {"x": x, "y_erf": out32(y_erf), "y_tanh": out32(y_tanh), "y_silu": out32(y_silu)},
        {"gelu_tanh_coeff": 0.044715},
        checks,
    )


@case
def case_swiglu():
    x = randn(2, 5, 16)
    wg, wu, wd = weight(40, 16), weight(40, 16), weight(16, 40)
    y = F.linear(F.silu(F.linear(d(x), d(wg))) * F.linear(d(x), d(wu)), d(wd))

    def check():
        g = d(x) @ d(wg).T
        return ((g * torch.sigmoid(g)) * (d(x) @ d(wu).T)) @ d(wd).T

    return (
        {
            "x": x,
            "gate_proj.weight": wg,
            "up_proj.weight": wu,
            "down_proj.weight": wd,
            "y": out32(y),
        },
        {"hidden": 16, "intermediate": 40, "act": "silu"},
        [("y", y, check)],
    )


def _rope1d_inputs():
    q = randn(2, 4, 7, 16)
    pos = torch.stack([torch.arange(0, 7), torch.arange(3, 10)]).to(torch.int64)
    return q, pos


def _complex_rope(q: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """Interleaved RoPE via complex multiplication (independent check)."""
    qc = torch.view_as_complex(q.reshape(*q.shape[:-1], -1, 2).contiguous())
    ang = pos.to(F64)[:, None, :, None] * inv_freq(q.shape[-1], theta)
    return torch.view_as_real(qc * torch.polar(torch.ones_like(ang), ang)).reshape(q.shape)


def _half_to_interleaved(t: torch.Tensor) -> torch.Tensor:
    h = t.shape[-1] // 2
    return torch.stack((t[..., :h], t[..., h:]), dim=-1).reshape(t.shape)


def _interleaved_to_half(t: torch.Tensor) -> torch.Tensor:
    return torch.cat((t[..., 0::2], t[..., 1::2]), dim=-1)


@case
def case_rope1d_half():
    theta = 10000.0
    q, pos = _rope1d_inputs()
    y = rope_half_ref(d(q), pos, theta)
    # rotate_half RoPE == interleaved RoPE after permuting dims (i, i+d/2) -> (2i, 2i+1)
    check = lambda: _interleaved_to_half(_complex_rope(_half_to_interleaved(d(q)), pos, theta))
    return (
        {"q": q, "position_ids": pos, "y": out32(y)},
        {"theta": theta, "layout": "BHSD", "style": "rotate_half"},
        [("y", y, check)],
    )


@case
def case_rope1d_interleaved():
    theta = 10000.0
    q, pos = _rope1d_inputs()
    y = rope_interleaved_ref(d(q), pos, theta)
    check = lambda: _complex_rope(d(q), pos, theta)
    return (
        {"q": q, "position_ids": pos, "y": out32(y)},
        {"theta": theta, "layout": "BHSD", "style": "interleaved"},
        [("y", y, check)],
    )


@case
def case_rope2d_half():
    theta, H, W = 10000.0, 3, 4
    q = randn(2, 4, H * W, 16)
    tok = torch.arange(H * W)
    rows = (tok // W).expand(2, -1)
    cols = (tok % W).expand(2, -1)
    qd = d(q)
    y = torch.cat(
        (rope_half_ref(qd[..., :8], rows, theta), rope_half_ref(qd[..., 8:], cols, theta)), dim=-1
    )

    def check():  # per-token loop with explicit 2x2 rotations
        out = torch.empty_like(qd)
        f = inv_freq(8, theta)
        for t in range(H * W):
            r, c = divmod(t, W)
            for half, p in ((0, r), (1, c)):
                base = 8 * half
                for i in range(4):
                    a, b = base + i, base + i + 4
                    cs, sn = math.cos(p * f[i].item()), math.sin(p * f[i].item())
                    xa, xb = qd[:, :, t, a], qd[:, :, t, b]
                    out[:, :, t, a] = xa * cs - xb * sn
                    out[:, :, t, b] = xb * cs + xa * sn
        return out

    return (
        {"q": q, "y": out32(y)},
        {
            "H": H,
            "W": W,
            "theta": theta,
            "layout": "BHSD",
            "token_index": "r*W+c",
            "split": "dims[0:8] rotate_half by row r, dims[8:16] rotate_half by col c",
        },
        [("y", y, check)],
    )


def _sdpa_case(kv: int, causal: bool, padding: bool):
    q, k, v = randn(2, 4, 6, 8), randn(2, kv, 6, 8), randn(2, kv, 6, 8)
    key_mask = None
    if padding:
        key_mask = torch.ones(2, 6, dtype=torch.bool)
        key_mask[1, 4:] = False
    y = sdpa_ref(d(q), d(k), d(v), causal, key_mask)

    def check():
        mask = torch.ones(2, 1, 6, 6, dtype=torch.bool)
        if causal:
            mask = mask & torch.ones(6, 6, dtype=torch.bool).tril()
        if key_mask is not None:
            mask = mask & key_mask[:, None, None, :]
        return F.scaled_dot_product_attention(
            d(q), d(k), d(v), attn_mask=mask, enable_gqa=(kv != 4)
        )

    tensors = {"q": q, "k": k, "v": v}
    if key_mask is not None:
        tensors["key_mask"] = key_mask
    tensors["y"] = out32(y)
    meta = {
        "scale": "1/sqrt(head_dim)",
        "causal": str(causal).lower(),
        "heads": 4,
        "kv_heads": kv,
        "key_mask": "true=attend, false=masked" if padding else "none",
        "layout": "BHSD",
    }
    return tensors, meta, [("y", y, check)]


@case
def case_sdpa_bidir():
    return _sdpa_case(4, causal=False, padding=False)


@case
def case_sdpa_causal():
    return _sdpa_case(4, causal=True, padding=False)


@case
def case_sdpa_padding():
    return _sdpa_case(4, causal=False, padding=True)


@case
def case_sdpa_causal_padding():
    return _sdpa_case(4, causal=True, padding=True)


@case
def case_sdpa_gqa():
    return _sdpa_case(2, causal=True, padding=False)


@case
def case_attention_module():
    B, S, hidden, Hq, Hkv, D = 2, 6, 32, 4, 2, 8
    eps, theta = 1e-6, 10000.0
    x = randn(B, S, hidden)
    w = {
        "q_proj.weight": weight(Hq * D, hidden),
        "q_proj.bias": weight(Hq * D),
        "k_proj.weight": weight(Hkv * D, hidden),
        "k_proj.bias": weight(Hkv * D),
        "v_proj.weight": weight(Hkv * D, hidden),
        "v_proj.bias": weight(Hkv * D),
        "o_proj.weight": weight(hidden, Hq * D),
        "q_norm.weight": norm_weight(D),
        "k_norm.weight": norm_weight(D),
    }
    key_mask = torch.ones(B, S, dtype=torch.bool)
    key_mask[1, 4:] = False
    pos = torch.arange(S).expand(B, -1)
    wd = {n: d(t) for n, t in w.items()}
    xd = d(x)

    def proj(name: str, heads: int) -> torch.Tensor:
        t = F.linear(xd, wd[f"{name}.weight"], wd[f"{name}.bias"])  # [B,S,heads*D]
        return t.view(B, S, heads, D)

    q = rmsnorm_ref(proj("q_proj", Hq), wd["q_norm.weight"], eps).transpose(1, 2)  # [B,Hq,S,D]
    k = rmsnorm_ref(proj("k_proj", Hkv), wd["k_norm.weight"], eps).transpose(1, 2)
    v = proj("v_proj", Hkv).transpose(1, 2)
    q = rope_half_ref(q, pos, theta)
    k = rope_half_ref(k, pos, theta)
    attn = sdpa_ref(q, k, v, causal=True, key_mask=key_mask)  # [B,Hq,S,D]
    y = F.linear(attn.transpose(1, 2).reshape(B, S, Hq * D), wd["o_proj.weight"])

    def check():  # fully independent path: einsum + F.rms_norm + complex RoPE + torch SDPA
        def lin(n, h):
            return (torch.einsum("bsi,oi->bso", xd, wd[f"{n}.weight"]) + wd[f"{n}.bias"]).view(B, S, h, D)

        qq = F.rms_norm(lin("q_proj", Hq), (D,), wd["q_norm.weight"], eps).transpose(1, 2)
        kk = F.rms_norm(lin("k_proj", Hkv), (D,), wd["k_norm.weight"], eps).transpose(1, 2)
        vv = lin("v_proj", Hkv).transpose(1, 2)
        rot = lambda t: _interleaved_to_half(_complex_rope(_half_to_interleaved(t), pos, theta))
        qq, kk = rot(qq), rot(kk)
        mask = torch.ones(S, S, dtype=torch.bool).tril()[None, None] & key_mask[:, None, None, :]
        a = F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask, enable_gqa=True)
        return a.transpose(1, 2).reshape(B, S, -1) @ wd["o_proj.weight"].T

    tensors = {"x": x, "key_mask": key_mask, **w, "y": out32(y)}
    meta = {
        "hidden": hidden,
        "heads": Hq,
        "kv_heads": Hkv,
        "head_dim": D,
        "rms_eps": eps,
        "rope_theta": theta,
        "rope_style": "rotate_half",
        "positions": "0..5 (both batches)",
        "causal": "true",
        "key_mask": "true=attend, false=masked",
        "qk_norm": "RMSNorm over head_dim, per head, after projection, before RoPE",
        "gqa": "query head h uses kv head h // (heads/kv_heads)",
    }
    return tensors, meta, [("y", y, check)]


# ------------------------------------------------------------------------------ main

_ST_DTYPES = {F32: ("F32", "<f4"), torch.int64: ("I64", "<i8"), torch.bool: ("BOOL", "|b1")}


def save_safetensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str]) -> None:
    """Byte-deterministic safetensors writer.

    safetensors.torch.save_file emits __metadata__ keys in hash-map (random) order, so
    re-running the generator would churn every file in git. This writes the same format
    (8-byte LE header length, JSON header padded with spaces to a multiple of 8, raw
    little-endian data) with a fixed order: tensors sorted by descending element size,
    then name (as safetensors does), so every tensor's data offset is aligned to its
    element size (zero-copy typed-array views work)."""
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, off = [], 0
    for n in order:
        t = tensors[n].contiguous()
        code, np_dtype = _ST_DTYPES[t.dtype]
        b = t.numpy().astype(np_dtype, copy=False).tobytes()
        header[n] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)

    # read back with the official library and compare
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == metadata, path
        assert sorted(f.keys()) == sorted(tensors), path
        for n, t in tensors.items():
            u = f.get_tensor(n)
            assert u.dtype == t.dtype and u.shape == t.shape and torch.equal(u, t), (path, n)



def fmt(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if v == int(v) and abs(v) >= 1:
            return str(int(v))
        return repr(v)  # 1e-06, 1e-05, 0.044715
    return str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--no-verify", action="store_true", help="skip independent cross-checks")
    ap.add_argument("cases", nargs="*", help=f"subset of cases (default: all): {' '.join(CASES)}")
    args = ap.parse_args()

    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {' '.join(unknown)}")
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)

    total = 0
    for name in args.cases or CASES:
        torch.manual_seed(0)
        tensors, meta, checks = CASES[name]()
        for tname, t in tensors.items():
            assert t.dtype in (F32, torch.int64, torch.bool), (name, tname, t.dtype)
            if t.dtype == F32:
                assert torch.isfinite(t).all(), (name, tname)
                assert t.abs().max() > 0.1, (name, tname, "suspiciously near zero")
        if not args.no_verify:
            for oname, ref, fn in checks:
                alt = fn()
                err = (alt - ref).abs().max().item()
                if not err <= 1e-9 * max(1.0, ref.abs().max().item()):
                    print(f"VERIFY FAIL {name}.{oname}: max abs diff {err:.3e}", file=sys.stderr)
                    return 1
        metadata = {"case": name, "generator": "scripts/py/gen_composite_fixtures.py"}
        metadata.update({k: fmt(v) for k, v in meta.items()})
        path = os.path.join(args.out, f"{name}.safetensors")
        save_safetensors(tensors, path, metadata)
        size = os.path.getsize(path)
        total += size
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in tensors.items())
        print(f"wrote {os.path.relpath(path, REPO_ROOT)} ({size} B): {shapes}")
    print(f"total {total} bytes" + ("" if args.no_verify else "; all cross-checks passed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
