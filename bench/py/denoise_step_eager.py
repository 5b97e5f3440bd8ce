"""Peer for bench/denoise-step.ts: one denoise step (conditional + unconditional rows in one
batch) of the latent DiT of graphs/dit.ts in PyTorch eager fp32.

The DiT is written here in plain PyTorch with the DSL's parameter names (state_dict keys == our
param names), the way a PyTorch user would write it for speed: F.scaled_dot_product_attention
with a boolean key mask, F.rms_norm, RoPE tables built once per call. Semantics as graphs/dit.ts
(Krea 2's SingleStreamDiT): 2x2 patchify -> Linear; sinusoidal(1000 t) -> tmlp -> temb; tproj ->
tvec (adaLN-single); blocks with (1 + scale) norm(x) + shift modulation and gates, QK-RMSNorm,
axial interleaved RoPE on image tokens (condition tokens at position 0; the first rope axis is the
unrotated frame axis), sigmoid-gated attention output, SwiGLU; last layer; unpatchify.

Loads weights and inputs (latents, timestep, condition, condition_mask) from the safetensors file
the TS side wrote, writes its velocity to --out-file (the TS side checks it against ours before
timing), then serves stdin requests, one JSON line each:
  run K   -> {"ms": [...]}   K timed forward passes
  mem     -> {"vmhwm_kb": ..., "vmrss_kb": ...}
  quit / EOF
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


class DiT:
    def __init__(self, w, cfg):
        self.w, self.c = w, cfg
        self.D, self.H = cfg["hidden"], cfg["heads"]
        self.KV = cfg.get("kvHeads", cfg["heads"])
        self.hd = self.D // self.H
        self.eps = cfg.get("eps", 1e-5)

    def lin(self, x, name, bias=True):
        b = self.w.get(name + ".bias") if bias else None
        return F.linear(x, self.w[name + ".weight"], b)

    def norm(self, x, name):
        # ScaleRMSNorm: stored scale is (weight - 1)
        return F.rms_norm(x, (x.shape[-1],), self.w[name + ".scale"] + 1, self.eps)

    def rope_tables(self, row, col):
        out = []
        for pos, d in ((row, self.c["ropeAxes"][-2]), (col, self.c["ropeAxes"][-1])):
            inv = 1.0 / self.c["theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
            ang = pos.float()[:, None] * inv
            out.append((ang.cos(), ang.sin()))
        return out

    def rotate(self, x, tables):
        axes = self.c["ropeAxes"]
        a0 = axes[0] if len(axes) == 3 else 0
        pieces = [x[..., :a0]] if a0 else []
        at = a0
        for (c, s), d in zip(tables, axes[-2:]):
            p = x[..., at:at + d]
            x0, x1 = p[..., 0::2], p[..., 1::2]
            pieces.append(torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2))
            at += d
        return torch.cat(pieces, -1)

    def attn(self, x, pfx, mask, tables):
        B, S, _ = x.shape
        q = self.lin(x, pfx + ".wq", False).view(B, S, self.H, self.hd).transpose(1, 2)
        k = self.lin(x, pfx + ".wk", False).view(B, S, self.KV, self.hd).transpose(1, 2)
        v = self.lin(x, pfx + ".wv", False).view(B, S, self.KV, self.hd).transpose(1, 2)
        q, k = self.norm(q, pfx + ".qknorm.qnorm"), self.norm(k, pfx + ".qknorm.knorm")
        q, k = self.rotate(q, tables), self.rotate(k, tables)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], enable_gqa=self.H != self.KV)
        o = o.transpose(1, 2).reshape(B, S, self.D)
        if pfx + ".gate.weight" in self.w:
            o = o * torch.sigmoid(self.lin(x, pfx + ".gate", False))
        return self.lin(o, pfx + ".wo", False)

    def mlp(self, x, pfx):
        return self.lin(F.silu(self.lin(x, pfx + ".gate", False)) * self.lin(x, pfx + ".up", False), pfx + ".down", False)

    @torch.inference_mode()
    def forward(self, latents, t, tokens, mask):
        c, p, D = self.c, self.c["patch"], self.D
        B, C, Hh, Ww = latents.shape
        h, w = Hh // p, Ww // p
        img = latents.reshape(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p)
        img = self.lin(img, "first")
        half = c["tdim"] // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = (1000.0 * t)[:, None] * freqs
        temb = self.lin(F.gelu(self.lin(torch.cat((args.cos(), args.sin()), -1), "tmlp.fc1"), approximate="tanh"), "tmlp.fc2")
        tvec = self.lin(F.gelu(temb, approximate="tanh"), "tproj.fc")
        Sc, HW = tokens.shape[1], h * w
        idx = torch.arange(HW)
        zeros = torch.zeros(Sc, dtype=torch.long)
        tables = self.rope_tables(torch.cat((zeros, idx // w)), torch.cat((zeros, idx % w)))
        key_mask = torch.cat((mask, torch.ones(B, HW, dtype=torch.bool)), 1)
        s = torch.cat((tokens, img), 1)
        for i in range(c["depth"]):
            pfx = f"blocks.{i}"
            ps, pb, pg, qs, qb, qg = (tvec[:, None, :] + self.w[pfx + ".mod.lin"]).chunk(6, -1)
            s = s + pg * self.attn((1 + ps) * self.norm(s, pfx + ".prenorm") + pb, pfx + ".attn", key_mask, tables)
            s = s + qg * self.mlp((1 + qs) * self.norm(s, pfx + ".postnorm") + qb, pfx + ".mlp")
        x = s[:, Sc:]
        scale, shift = (temb[:, None, :] + self.w["last.modulation.lin"]).chunk(2, 1)
        out = self.lin((1 + scale) * self.norm(x, "last.norm") + shift, "last.linear")
        return out.reshape(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, Hh, Ww)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--config", required=True, help="the DiTConfig as JSON")
    ap.add_argument("--out-file", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    w = load_file(a.weights)
    inputs = {k[2:]: w.pop(k) for k in list(w) if k.startswith("__")}
    model = DiT(w, json.loads(a.config))
    run = lambda: model.forward(inputs["latents"], inputs["timestep"], inputs["condition"], inputs["condition_mask"].bool())
    v = run()
    save_file({"velocity": v.contiguous()}, a.out_file)
    for _ in range(a.warmup):
        run()
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(), "load_s": time.perf_counter() - t0}), flush=True)
    if not a.serve:
        return
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            ms = []
            for _ in range(int(cmd[1])):
                t = time.perf_counter()
                run()
                ms.append((time.perf_counter() - t) * 1000)
            print(json.dumps({"ms": ms}), flush=True)
        elif cmd[0] == "mem":
            print(json.dumps({"vmhwm_kb": status_kb("VmHWM"), "vmrss_kb": status_kb("VmRSS")}), flush=True)
        else:
            print(json.dumps({"error": f"unknown request {cmd[0]}"}), flush=True)


if __name__ == "__main__":
    main()
