"""Peer for bench/compile-vs-torch.ts: torch.onnx.export(..., dynamo=True) of a
plain-PyTorch decoder stack equivalent to examples/transformer.ts preset 'small'
(Qwen2 layout: q/k/v bias, no o_proj bias, GQA, RoPE 'half', SwiGLU, RMSNorm,
causal + padding mask, dynamic batch and seq).

Prints one JSON line on stdout. Timings are in-process (time.perf_counter);
Python/torch/onnxscript import time is measured and reported separately.

  .venv/bin/python bench/py/export_small.py [--runs 3] [--opset N]
"""
import time

_t_import0 = time.perf_counter()
import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
import logging  # noqa: E402
import io  # noqa: E402
import contextlib  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.onnx  # noqa: E402
import onnxscript  # noqa: E402,F401  (the dynamo exporter's lowering library)
import onnx_ir  # noqa: E402,F401

_t_import1 = time.perf_counter()

CFG = dict(vocab=1024, hidden=96, layers=5, heads=4, kv_heads=2, intermediate=256, rope_theta=10000.0, eps=1e-6)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
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
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads = c["heads"], c["kv_heads"]
        self.head_dim = c["hidden"] // c["heads"]
        self.q_proj = nn.Linear(c["hidden"], self.heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(c["hidden"], self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(c["hidden"], self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c["hidden"], bias=False)

    def forward(self, x, cos, sin, mask):
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.heads // self.kv_heads
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(o.transpose(1, 2).reshape(B, S, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.up_proj = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.down_proj = nn.Linear(c["intermediate"], c["hidden"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden"], c["eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden"], c["eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Stack(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList([Block(c) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["hidden"], c["eps"])
        hd = c["hidden"] // c["heads"]
        self.register_buffer("inv_freq", 1.0 / c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd), persistent=False)

    def forward(self, input_ids, attention_mask):
        B, S = input_ids.shape
        h = self.embed_tokens(input_ids)
        pos = torch.arange(S, device=input_ids.device, dtype=torch.float32)
        ang = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((ang, ang), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        i = torch.arange(S, device=input_ids.device)
        keep = (i[:, None] >= i[None, :])[None, None] & attention_mask[:, None, None, :]
        mask = torch.zeros(keep.shape, dtype=h.dtype).masked_fill(~keep, torch.finfo(h.dtype).min)
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        return self.norm(h)


def export_once(model, args, opset):
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    kw = {}
    if opset:
        kw["opset_version"] = opset
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        t0 = time.perf_counter()
        prog = torch.onnx.export(
            model,
            args,
            dynamo=True,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            **kw,
        )
        t1 = time.perf_counter()
        data = prog.model_proto.SerializeToString()
        t2 = time.perf_counter()
    proto = prog.model_proto
    return {
        "export_s": t1 - t0,
        "serialize_s": t2 - t1,
        "total_s": t2 - t0,
        "bytes": len(data),
        "nodes": len(proto.graph.node),
        "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="warm exports after the cold one (median reported)")
    ap.add_argument("--opset", type=int, default=0, help="opset_version (0: the exporter's default)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = Stack(CFG).eval()
    ids = torch.randint(0, CFG["vocab"], (2, 16), dtype=torch.int64)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 12:] = False
    with torch.no_grad():
        model(ids, mask)  # eager sanity run (not timed)
    cold = export_once(model, (ids, mask), a.opset)
    warm = [export_once(model, (ids, mask), a.opset) for _ in range(a.runs)]
    med = lambda k: statistics.median(r[k] for r in warm)  # noqa: E731
    out = {
        "bench": "torch-onnx-export-small",
        "torch": torch.__version__,
        "onnxscript": onnxscript.__version__,
        "import_s": _t_import1 - _t_import0,
        "params": sum(p.numel() for p in model.parameters()),
        "cold_total_s": cold["total_s"],
        "warm_runs": a.runs,
        "warm_export_s": med("export_s"),
        "warm_serialize_s": med("serialize_s"),
        "warm_total_s": med("total_s"),
        "warm_all_total_s": [r["total_s"] for r in warm],
        "onnx_nodes": cold["nodes"],
        "onnx_bytes": cold["bytes"],
        "opset": cold["opset"],
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
