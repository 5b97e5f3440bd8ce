#!/usr/bin/env python3
"""Generate tiny diffusers-format AutoencoderKL folders with float64 reference outputs
in test/fixtures/vae/<case>/ for graphs/vae.ts and src/io/diffusers.ts.

Usage (from the repo root, inside the venv made by scripts/py/setup-venv.sh):
    python scripts/py/gen_vae_fixtures.py [--out DIR] [--no-verify] [case ...]

diffusers is not a dependency: the reference is a plain-torch functional AutoencoderKL
written from diffusers' semantics (autoencoder_kl.py, vae.py Encoder/Decoder, resnet.py
ResnetBlock2D / Downsample2D / Upsample2D, the UNetMidBlock2D attention). Each case folder
holds what `AutoencoderKL.save_pretrained` would write:

  config.json                          diffusers keys; sd-tiny omits use_quant_conv & co
                                       so that importers must apply diffusers' defaults
  diffusion_pytorch_model.safetensors  fp32 weights under diffusers' names
  reference.safetensors                inputs and reference outputs (see the README)

Conventions: torch.manual_seed(0) per case; conv weights ~ N(0, 1/fan_in), linear weights
~ N(0, 1/in), biases 0.1 * N(0, 1), norm weights 1 + 0.2 * N(0, 1), norm biases 0.1 * N(0, 1);
image ~ U(-1, 1), noise and decoder latent ~ N(0, 1). Weights and inputs are drawn in
float32; the reference runs in float64 from those values and is stored as float32.

Unless --no-verify is given, every output is also computed by an independent nn.Module
implementation (nn.Conv2d / nn.GroupNorm / nn.Linear named like diffusers and loaded with
load_state_dict(strict=True), F.interpolate, F.scaled_dot_product_attention) and the
script fails if the two disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_composite_fixtures import fmt, save_safetensors  # noqa: E402  (deterministic writer)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "test", "fixtures", "vae")

F64 = torch.float64
F32 = torch.float32
EPS = 1e-6

# diffusers' AutoencoderKL defaults for keys a config.json may omit
DEFAULTS = {
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
    "shift_factor": None,
    "latents_mean": None,
    "latents_std": None,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
}

CASES = {
    # the FLUX.1 / SD3 layout, scaled down: 16 latent channels, 4 levels (f8), no quant convs,
    # shift + scale; non-square images and batch 2
    "flux-tiny": {
        "config": {
            "_class_name": "AutoencoderKL",
            "act_fn": "silu",
            "block_out_channels": [16, 16, 32, 32],
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "force_upcast": True,
            "in_channels": 3,
            "latent_channels": 16,
            "latents_mean": None,
            "latents_std": None,
            "layers_per_block": 1,
            "mid_block_add_attention": True,
            "norm_num_groups": 8,
            "out_channels": 3,
            "sample_size": 32,
            "scaling_factor": 0.3611,
            "shift_factor": 0.1159,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "use_post_quant_conv": False,
            "use_quant_conv": False,
        },
        "image": (2, 3, 32, 48),
    },
    # an SD-style config.json without the newer keys (quant convs on by default), two levels,
    # two resnets per encoder level, no mid attention, per-channel latents_mean / latents_std
    "sd-tiny": {
        "config": {
            "_class_name": "AutoencoderKL",
            "act_fn": "silu",
            "block_out_channels": [8, 16],
            "down_block_types": ["DownEncoderBlock2D"] * 2,
            "in_channels": 3,
            "latent_channels": 4,
            "latents_mean": [0.1, -0.2, 0.3, 0.05],
            "latents_std": [0.9, 1.1, 0.7, 1.3],
            "layers_per_block": 2,
            "mid_block_add_attention": False,
            "norm_num_groups": 4,
            "out_channels": 3,
            "sample_size": 16,
            "scaling_factor": 0.13025,
            "up_block_types": ["UpDecoderBlock2D"] * 2,
        },
        "image": (1, 3, 16, 24),
    },
}


def full_config(cfg: dict) -> dict:
    return {**DEFAULTS, **cfg}


# ------------------------------------------------------------------------- weights


def param_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    """Every parameter of the AutoencoderKL described by `c`, in diffusers naming."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cin, cout, k):
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    def norm(name, ch):
        shapes[f"{name}.weight"] = (ch,)
        shapes[f"{name}.bias"] = (ch,)

    def resnet(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.conv_shortcut", cin, cout, 1)

    def mid(name, ch):
        resnet(f"{name}.resnets.0", ch, ch)
        if c["mid_block_add_attention"]:
            a = f"{name}.attentions.0"
            norm(f"{a}.group_norm", ch)
            for lin in ("to_q", "to_k", "to_v", "to_out.0"):
                shapes[f"{a}.{lin}.weight"] = (ch, ch)
                shapes[f"{a}.{lin}.bias"] = (ch,)
        resnet(f"{name}.resnets.1", ch, ch)

    ch = c["block_out_channels"]
    L, C = c["layers_per_block"], c["latent_channels"]
    conv("encoder.conv_in", c["in_channels"], ch[0], 3)
    for i, out in enumerate(ch):
        cin = ch[0] if i == 0 else ch[i - 1]
        for j in range(L):
            resnet(f"encoder.down_blocks.{i}.resnets.{j}", cin if j == 0 else out, out)
        if i < len(ch) - 1:
            conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", out, out, 3)
    mid("encoder.mid_block", ch[-1])
    norm("encoder.conv_norm_out", ch[-1])
    conv("encoder.conv_out", ch[-1], 2 * C, 3)
    if c["use_quant_conv"]:
        conv("quant_conv", 2 * C, 2 * C, 1)
    if c["use_post_quant_conv"]:
        conv("post_quant_conv", C, C, 1)
    rev = list(reversed(ch))
    conv("decoder.conv_in", C, rev[0], 3)
    mid("decoder.mid_block", rev[0])
    for i, out in enumerate(rev):
        cin = rev[0] if i == 0 else rev[i - 1]
        for j in range(L + 1):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", cin if j == 0 else out, out)
        if i < len(rev) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", out, out, 3)
    norm("decoder.conv_norm_out", rev[-1])
    conv("decoder.conv_out", rev[-1], c["out_channels"], 3)
    return shapes


def draw_weights(c: dict) -> dict[str, torch.Tensor]:
    w = {}
    for name, shape in param_shapes(c).items():
        is_norm = any(k in name for k in ("norm1.", "norm2.", "group_norm.", "conv_norm_out."))
        if name.endswith(".bias"):
            t = 0.1 * torch.randn(shape, dtype=F32)
        elif is_norm:
            t = 1.0 + 0.2 * torch.randn(shape, dtype=F32)
        else:
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            t = torch.randn(shape, dtype=F32) / fan_in**0.5
        w[name] = t.to(F32).contiguous()
    return w


# ---------------------------------------------------------- functional reference (f64)


def group_norm(x, w, b, groups):
    n, ch = x.shape[:2]
    g = x.reshape(n, groups, -1)
    mu = g.mean(-1, keepdim=True)
    var = ((g - mu) ** 2).mean(-1, keepdim=True)  # biased, as nn.GroupNorm
    y = ((g - mu) / torch.sqrt(var + EPS)).reshape(x.shape)
    shape = (1, ch) + (1,) * (x.dim() - 2)
    return y * w.reshape(shape) + b.reshape(shape)


def silu(x):
    return x / (1.0 + torch.exp(-x))


class Ref:
    """AutoencoderKL forward over a float64 state dict."""

    def __init__(self, c: dict, w: dict[str, torch.Tensor]):
        self.c = c
        self.w = {k: v.to(F64) for k, v in w.items()}
        self.g = c["norm_num_groups"]

    def conv(self, name, x, stride=1, pad=(1, 1, 1, 1)):
        # pad = (left, right, top, bottom) as F.pad takes it
        return F.conv2d(F.pad(x, pad), self.w[f"{name}.weight"], self.w[f"{name}.bias"], stride=stride)

    def conv1x1(self, name, x):
        return F.conv2d(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def norm(self, name, x):
        return group_norm(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.g)

    def resnet(self, name, x):
        h = self.conv(f"{name}.conv1", silu(self.norm(f"{name}.norm1", x)))
        h = self.conv(f"{name}.conv2", silu(self.norm(f"{name}.norm2", h)))
        if f"{name}.conv_shortcut.weight" in self.w:
            x = self.conv1x1(f"{name}.conv_shortcut", x)
        return x + h

    def attention(self, name, x):
        n, ch, hh, ww = x.shape
        t = self.norm(f"{name}.group_norm", x).reshape(n, ch, hh * ww).transpose(1, 2)
        lin = lambda k, v: v @ self.w[f"{name}.{k}.weight"].T + self.w[f"{name}.{k}.bias"]
        q, k, v = lin("to_q", t), lin("to_k", t), lin("to_v", t)
        s = q @ k.transpose(1, 2) / ch**0.5  # one head of width ch
        p = torch.exp(s - s.amax(-1, keepdim=True))
        o = lin("to_out.0", (p / p.sum(-1, keepdim=True)) @ v)
        return o.transpose(1, 2).reshape(n, ch, hh, ww) + x

    def mid(self, name, x):
        h = self.resnet(f"{name}.resnets.0", x)
        if self.c["mid_block_add_attention"]:
            h = self.attention(f"{name}.attentions.0", h)
        return self.resnet(f"{name}.resnets.1", h)

    def encode(self, x):
        c = self.c
        h = self.conv("encoder.conv_in", x)
        for i in range(len(c["block_out_channels"])):
            for j in range(c["layers_per_block"]):
                h = self.resnet(f"encoder.down_blocks.{i}.resnets.{j}", h)
            if i < len(c["block_out_channels"]) - 1:
                h = self.conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", h, stride=2, pad=(0, 1, 0, 1))
        h = self.mid("encoder.mid_block", h)
        h = self.conv("encoder.conv_out", silu(self.norm("encoder.conv_norm_out", h)))
        if c["use_quant_conv"]:
            h = self.conv1x1("quant_conv", h)
        C = c["latent_channels"]
        return h[:, :C], h[:, C:].clamp(-30.0, 20.0)

    def decode_raw(self, z):
        c = self.c
        if c["use_post_quant_conv"]:
            z = self.conv1x1("post_quant_conv", z)
        h = self.mid("decoder.mid_block", self.conv("decoder.conv_in", z))
        n = len(c["block_out_channels"])
        for i in range(n):
            for j in range(c["layers_per_block"] + 1):
                h = self.resnet(f"decoder.up_blocks.{i}.resnets.{j}", h)
            if i < n - 1:
                h = h.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest x2
                h = self.conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", h)
        return self.conv("decoder.conv_out", silu(self.norm("decoder.conv_norm_out", h)))


def latent_affine(c: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, scale) with latent = (z - shift) * scale, as the FLUX/SD3/SDXL pipelines apply them."""
    C = c["latent_channels"]
    if c["latents_mean"] is not None:
        m = torch.tensor(c["latents_mean"], dtype=F64).reshape(1, C, 1, 1)
        s = torch.tensor(c["latents_std"], dtype=F64).reshape(1, C, 1, 1)
        return m, c["scaling_factor"] / s
    return torch.tensor(c["shift_factor"] or 0.0, dtype=F64), torch.tensor(c["scaling_factor"], dtype=F64)


# ------------------------------------------------- independent check: nn.Module tree


class MResnet(nn.Module):
    def __init__(self, cin, cout, g):
        super().__init__()
        self.norm1 = nn.GroupNorm(g, cin, eps=EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(g, cout, eps=EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class MAttn(nn.Module):
    def __init__(self, ch, g):
        super().__init__()
        self.group_norm = nn.GroupNorm(g, ch, eps=EPS)
        self.to_q, self.to_k, self.to_v = nn.Linear(ch, ch), nn.Linear(ch, ch), nn.Linear(ch, ch)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch), nn.Dropout(0.0)])

    def forward(self, x):
        n, ch, hh, ww = x.shape
        t = self.group_norm(x).flatten(2).transpose(1, 2)
        o = F.scaled_dot_product_attention(self.to_q(t)[:, None], self.to_k(t)[:, None], self.to_v(t)[:, None])[:, 0]
        return self.to_out[1](self.to_out[0](o)).transpose(1, 2).reshape(n, ch, hh, ww) + x


class MMid(nn.Module):
    def __init__(self, ch, g, attn):
        super().__init__()
        self.resnets = nn.ModuleList([MResnet(ch, ch, g), MResnet(ch, ch, g)])
        self.attentions = nn.ModuleList([MAttn(ch, g)] if attn else [])

    def forward(self, x):
        h = self.resnets[0](x)
        for a in self.attentions:
            h = a(h)
        return self.resnets[1](h)


class MDown(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class MUp(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MBlock(nn.Module):
    def __init__(self, resnets, samplers, kind):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        setattr(self, kind, nn.ModuleList(samplers))
        self.kind = kind

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        for s in getattr(self, self.kind):
            x = s(x)
        return x


class MVae(nn.Module):
    def __init__(self, c):
        super().__init__()
        ch, g, L, C = c["block_out_channels"], c["norm_num_groups"], c["layers_per_block"], c["latent_channels"]
        n = len(ch)
        enc = nn.Module()
        enc.conv_in = nn.Conv2d(c["in_channels"], ch[0], 3, padding=1)
        enc.down_blocks = nn.ModuleList()
        for i, out in enumerate(ch):
            cin = ch[0] if i == 0 else ch[i - 1]
            rs = [MResnet(cin if j == 0 else out, out, g) for j in range(L)]
            ds = [MDown(nn.Conv2d(out, out, 3, stride=2))] if i < n - 1 else []
            enc.down_blocks.append(MBlock(rs, ds, "downsamplers"))
        enc.mid_block = MMid(ch[-1], g, c["mid_block_add_attention"])
        enc.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=EPS)
        enc.conv_out = nn.Conv2d(ch[-1], 2 * C, 3, padding=1)
        self.encoder = enc
        rev = list(reversed(ch))
        dec = nn.Module()
        dec.conv_in = nn.Conv2d(C, rev[0], 3, padding=1)
        dec.mid_block = MMid(rev[0], g, c["mid_block_add_attention"])
        dec.up_blocks = nn.ModuleList()
        for i, out in enumerate(rev):
            cin = rev[0] if i == 0 else rev[i - 1]
            rs = [MResnet(cin if j == 0 else out, out, g) for j in range(L + 1)]
            us = [MUp(out)] if i < n - 1 else []
            dec.up_blocks.append(MBlock(rs, us, "upsamplers"))
        dec.conv_norm_out = nn.GroupNorm(g, rev[-1], eps=EPS)
        dec.conv_out = nn.Conv2d(rev[-1], c["out_channels"], 3, padding=1)
        self.decoder = dec
        self.quant_conv = nn.Conv2d(2 * C, 2 * C, 1) if c["use_quant_conv"] else None
        self.post_quant_conv = nn.Conv2d(C, C, 1) if c["use_post_quant_conv"] else None

    def encode(self, x):
        e = self.encoder
        h = e.conv_in(x)
        for b in e.down_blocks:
            h = b(h)
        h = e.conv_out(F.silu(e.conv_norm_out(e.mid_block(h))))
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        mean, logvar = torch.chunk(h, 2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)

    def decode_raw(self, z):
        d = self.decoder
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        h = d.mid_block(d.conv_in(z))
        for b in d.up_blocks:
            h = b(h)
        return d.conv_out(F.silu(d.conv_norm_out(h)))


# ------------------------------------------------------------------------------ main


def build_case(name: str):
    spec = CASES[name]
    c = full_config(spec["config"])
    torch.manual_seed(0)
    w = draw_weights(c)
    B, _, H, W = spec["image"]
    f = 2 ** (len(c["block_out_channels"]) - 1)
    C, h, wd = c["latent_channels"], H // f, W // f
    image = (torch.rand(spec["image"], dtype=F32) * 2 - 1).to(F32)
    noise = torch.randn(B, C, h, wd, dtype=F32)
    latent_in = torch.randn(B, C, h, wd, dtype=F32)

    ref = Ref(c, w)
    shift, scale = latent_affine(c)
    mean, logvar = ref.encode(image.to(F64))
    sample = mean + torch.exp(0.5 * logvar) * noise.to(F64)
    out = {
        "mean": mean,
        "logvar": logvar,
        "latent_mode": (mean - shift) * scale,
        "latent_sample": (sample - shift) * scale,
        "decoded": ref.decode_raw(latent_in.to(F64) / scale + shift),
    }

    def check() -> dict[str, torch.Tensor]:
        m = MVae(c).to(F64)
        m.load_state_dict({k: v.to(F64) for k, v in w.items()}, strict=True)  # names + shapes = diffusers layout
        mm, lv = m.encode(image.to(F64))
        smp = mm + (0.5 * lv).exp() * noise.to(F64)
        return {
            "mean": mm,
            "logvar": lv,
            "latent_mode": (mm - shift) * scale,
            "latent_sample": (smp - shift) * scale,
            "decoded": m.decode_raw(latent_in.to(F64) / scale + shift),
        }

    io = {"image": image, "noise": noise, "latent_in": latent_in, **{k: v.to(F32).contiguous() for k, v in out.items()}}
    meta = {
        "case": name,
        "generator": "scripts/py/gen_vae_fixtures.py",
        "factor": fmt(f),
        "image": "U(-1,1) fp32 [B, in, H, W]",
        "latent_mode": "(mean - shift) * scale",
        "latent_sample": "(mean + exp(0.5*logvar) * noise - shift) * scale",
        "decoded": "decoder(post_quant_conv(latent_in / scale + shift))",
        "shift_scale": "per channel: shift = latents_mean, scale = scaling_factor / latents_std"
        if c["latents_mean"] is not None
        else "shift = shift_factor (0 if null), scale = scaling_factor",
    }
    return spec["config"], w, io, meta, out, check


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--no-verify", action="store_true", help="skip the independent nn.Module cross-check")
    ap.add_argument("cases", nargs="*", help=f"subset of cases (default: all): {' '.join(CASES)}")
    args = ap.parse_args()
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {' '.join(unknown)}")
    torch.set_grad_enabled(False)

    total = 0
    for name in args.cases or CASES:
        config, w, io, meta, out, check = build_case(name)
        for k, t in io.items():
            assert torch.isfinite(t).all(), (name, k)
            assert t.abs().max() > 0.1, (name, k, "suspiciously near zero")
        if not args.no_verify:
            alt = check()
            for k, ref in out.items():
                err = (alt[k] - ref).abs().max().item()
                if not err <= 1e-9 * max(1.0, ref.abs().max().item()):
                    print(f"VERIFY FAIL {name}.{k}: max abs diff {err:.3e}", file=sys.stderr)
                    return 1
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as fh:
            fh.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_safetensors(w, os.path.join(d, "diffusion_pytorch_model.safetensors"), {"format": "pt"})
        save_safetensors(io, os.path.join(d, "reference.safetensors"), meta)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        total += size
        nparams = sum(t.numel() for t in w.values())
        print(f"wrote {os.path.relpath(d, REPO_ROOT)}/ ({size} B, {nparams} params): " + ", ".join(f"{k}{list(v.shape)}" for k, v in io.items()))
    print(f"total {total} bytes" + ("" if args.no_verify else "; all cross-checks passed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
