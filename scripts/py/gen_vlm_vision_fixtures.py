#!/usr/bin/env python3
"""Generate reference fixtures for the T5 encoder, the InternVL3 vision path and
InternVL's dynamic tiling, as safetensors files in test/fixtures/vlm-vision/.

Usage (from the repo root, inside the venv made by `scripts/py/setup-venv.sh --hf`,
plus Pillow for the tiling cases: `.venv/bin/pip install pillow`):
    python scripts/py/gen_vlm_vision_fixtures.py [--out DIR] [--no-verify] [cases...]

Conventions (see test/fixtures/vlm-vision/README.md):
  * models are transformers' own classes (T5EncoderModel, InternVLVisionModel,
    InternVLForConditionalGeneration) with tiny random configs, eager attention;
  * after transformers' init every parameter is perturbed deterministically
    (torch.manual_seed(0) per case), because the init leaves norms at 1, layer
    scales at 0.1 and cls/position embeddings at 0, which would hide naming bugs;
  * parameters are fp32; the reference runs the same model in float64 (from those
    fp32 values) and is stored as fp32; tensor names are the model's state_dict
    names (transformers 5.x layout);
  * `hidden_states.<i>` is transformers' output_hidden_states[i];
  * unless --no-verify, each reference is cross-checked against an independent
    float64 implementation written here (einsum attention, explicit buckets,
    per-element pixel shuffle, ...), and the tiling rule against a brute force.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_composite_fixtures import fmt, save_safetensors  # noqa: E402  (the house writer)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "test", "fixtures", "vlm-vision")
F64, F32, I64 = torch.float64, torch.float32, torch.int64


# --------------------------------------------------------------------------- helpers


def perturb(model: torch.nn.Module) -> None:
    """Make every parameter informative: constant tensors (norm weights, biases,
    layer scales, cls/position embeddings) get noise around their value; others are
    redrawn (see below)."""
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            flat = p.detach().flatten()
            if bool((flat == flat[0]).all()):
                base = float(flat[0])
                scale = 0.3 if base != 0 else 0.5
                p.copy_(base + scale * torch.randn(p.shape, dtype=p.dtype))
            else:
                # transformers inits many weights with std 0.02, which leaves attention
                # nearly uniform; use at least 1/sqrt(fan_in) so the logits matter
                fan_in = max(1, p[0].numel()) if p.dim() >= 2 else p.numel()
                std = max(float(p.detach().std()), fan_in**-0.5)
                p.copy_(std * torch.randn(p.shape, dtype=p.dtype))


def params32(model: torch.nn.Module, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    out = {}
    for n, p in model.state_dict().items():
        if any(n.startswith(s) for s in skip):
            continue
        assert p.dtype == F32, (n, p.dtype)
        out[n] = p.detach().clone().contiguous()
    return out


def f64_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    m = copy.deepcopy(model).double()
    m.eval()
    return m


def out32(t: torch.Tensor) -> torch.Tensor:
    assert t.dtype == F64, t.dtype
    return t.to(F32).contiguous()


def rms(x, w, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def ln(x, w, b, eps):
    c = x - x.mean(-1, keepdim=True)
    return c / torch.sqrt(c.pow(2).mean(-1, keepdim=True) + eps) * w + b


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


# ------------------------------------------------------------------------------- T5


def bucket_py(rel: int, num_buckets: int, max_distance: int) -> int:
    """Bidirectional T5 bucket, evaluated like torch does (float32 log branch)."""
    import numpy as np

    nb = num_buckets // 2
    b = nb if rel > 0 else 0
    r = abs(rel)
    max_exact = nb // 2
    if r < max_exact:
        return b + r
    lr = np.log(np.float32(r) / np.float32(max_exact), dtype=np.float32)
    v = np.float32(lr / np.float32(math.log(max_distance / max_exact))) * np.float32(nb - max_exact)
    return b + min(max_exact + int(v), nb - 1)


def t5_ref(sd: dict[str, torch.Tensor], cfg, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Independent float64 T5 encoder: einsum attention, buckets from bucket_py."""
    w = {k: v.to(F64) for k, v in sd.items()}
    B, S = ids.shape
    H, dk, eps = cfg.num_heads, cfg.d_kv, cfg.layer_norm_epsilon
    h = w["shared.weight"][ids]
    hs = [h]
    rel = torch.arange(S)[None, :] - torch.arange(S)[:, None]
    bk = torch.tensor([[bucket_py(int(r), cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance) for r in row] for row in rel])
    bias = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][bk].permute(2, 0, 1)  # [H,S,S]
    neg = torch.where(mask.bool(), torch.zeros((), dtype=F64), torch.full((), -1e300, dtype=F64))[:, None, None, :]
    act = {"gelu_new": gelu_tanh, "relu": torch.relu, "gelu": gelu_erf}[cfg.dense_act_fn]
    for i in range(cfg.num_layers):
        p = f"encoder.block.{i}.layer."
        x = rms(h, w[p + "0.layer_norm.weight"], eps)
        q, k, v = (torch.einsum("bsd,od->bso", x, w[p + f"0.SelfAttention.{n}.weight"]).view(B, S, H, dk) for n in "qkv")
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) + bias + neg
        a = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, -1), v).reshape(B, S, H * dk)
        h = h + a @ w[p + "0.SelfAttention.o.weight"].T
        x = rms(h, w[p + "1.layer_norm.weight"], eps)
        if cfg.is_gated_act:
            f = act(x @ w[p + "1.DenseReluDense.wi_0.weight"].T) * (x @ w[p + "1.DenseReluDense.wi_1.weight"].T)
        else:
            f = act(x @ w[p + "1.DenseReluDense.wi.weight"].T)
        h = h + f @ w[p + "1.DenseReluDense.wo.weight"].T
        hs.append(h)
    hs[-1] = rms(h, w["encoder.final_layer_norm.weight"], eps)
    return hs


def _t5_case(cfg_kwargs: dict, ids: torch.Tensor, mask: torch.Tensor, table_cfgs: list[tuple[int, int]]):
    from transformers import T5Config, T5EncoderModel
    from transformers.models.t5.modeling_t5 import T5Attention

    cfg = T5Config(**cfg_kwargs, attn_implementation="eager")
    model = T5EncoderModel(cfg).eval()
    perturb(model)
    sd = params32(model, skip=("encoder.embed_tokens.",))  # tied to shared.weight
    m64 = f64_copy(model)
    out = m64(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hs = list(out.hidden_states)
    assert len(hs) == cfg.num_layers + 1
    assert torch.equal(hs[-1], out.last_hidden_state)
    tensors = {"input_ids": ids, "attention_mask": mask, **sd}
    checks = []
    ref_cache: dict[str, list[torch.Tensor]] = {}

    def ref(i: int) -> torch.Tensor:
        if "r" not in ref_cache:
            ref_cache["r"] = t5_ref(sd, cfg, ids, mask)
        return ref_cache["r"][i]

    for i, t in enumerate(hs):
        tensors[f"hidden_states.{i}"] = out32(t)
        # transformers' T5LayerNorm takes the variance (and its rsqrt) in float32 even in a
        # float64 model, so the reference carries float32-level error in every norm
        checks.append((f"hidden_states.{i}", t, lambda i=i: ref(i), 2e-6))
    # transformers' own bucket function over a range of relative positions
    for nb, md in table_cfgs:
        rel = torch.arange(-(md + 8), md + 9)
        b = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=nb, max_distance=md)
        tensors[f"buckets.{nb}.{md}"] = b.to(I64)
        mine = torch.tensor([bucket_py(int(r), nb, md) for r in rel])
        assert torch.equal(mine, b), f"bucket_py disagrees with transformers for {nb}/{md}"
    meta = {
        "model_type": "t5",
        "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model,
        "d_kv": cfg.d_kv,
        "d_ff": cfg.d_ff,
        "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "feed_forward_proj": cfg.feed_forward_proj,
        "bucket_tables": ",".join(f"{nb}.{md}" for nb, md in table_cfgs),
        "padding": "attention_mask 0 = padding; every position (padded too) is compared",
    }
    return tensors, meta, checks


def t5_inputs(B: int, S: int, vocab: int, lengths: list[int], left: list[bool]):
    ids = torch.randint(1, vocab, (B, S), dtype=I64)
    mask = torch.zeros(B, S, dtype=I64)
    for b, (n, lpad) in enumerate(zip(lengths, left)):
        if lpad:
            mask[b, S - n :] = 1
        else:
            mask[b, :n] = 1
    ids = torch.where(mask.bool(), ids, torch.zeros_like(ids))  # pad id 0
    return ids, mask


CASES = {}


def case(fn):
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


@case
def case_t5_gated():
    """T5 v1.1 style: gated-gelu (gelu_new), relative buckets with a log branch."""
    ids, mask = t5_inputs(3, 12, 128, [12, 7, 9], [False, False, True])
    kw = dict(vocab_size=128, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_heads=4, relative_attention_num_buckets=32,
              relative_attention_max_distance=20, feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6)
    return _t5_case(kw, ids, mask, [(32, 20), (32, 128), (64, 256)])


@case
def case_t5_relu():
    """Original T5: plain relu wi/wo, d_kv * heads != d_model."""
    ids, mask = t5_inputs(2, 9, 96, [9, 5], [False, False])
    kw = dict(vocab_size=96, d_model=24, d_kv=10, d_ff=40, num_layers=2, num_heads=3, relative_attention_num_buckets=16,
              relative_attention_max_distance=12, feed_forward_proj="relu", dropout_rate=0.0, layer_norm_epsilon=1e-6)
    return _t5_case(kw, ids, mask, [(16, 12)])


# --------------------------------------------------------------------------- InternVL


def internvit_ref(w: dict[str, torch.Tensor], vc, pixels: torch.Tensor, prefix: str) -> list[torch.Tensor]:
    """Independent float64 InternViT: returns [embeddings, layer 1, ..., layer L]."""
    w = {k.removeprefix(prefix): v.to(F64) for k, v in w.items() if k.startswith(prefix)}
    P, D, H = vc.patch_size[0], vc.hidden_size, vc.num_attention_heads
    T, C, HH, WW = pixels.shape
    gh, gw = HH // P, WW // P
    # patchify explicitly: patch (r, c) -> row-major token r*gw + c, weights (C, kh, kw)
    patches = pixels.reshape(T, C, gh, P, gw, P).permute(0, 2, 4, 1, 3, 5).reshape(T, gh * gw, C * P * P)
    pw = w["embeddings.patch_embeddings.projection.weight"].reshape(D, -1)
    x = patches @ pw.T + w["embeddings.patch_embeddings.projection.bias"]
    x = torch.cat([w["embeddings.cls_token"].expand(T, 1, D), x], 1) + w["embeddings.position_embeddings"]
    eps = vc.layer_norm_eps

    def norm(t, n):
        if vc.norm_type == "rms_norm":
            return rms(t, w[n + ".weight"], eps)
        return ln(t, w[n + ".weight"], w[n + ".bias"], eps)

    def lin(t, n):
        y = t @ w[n + ".weight"].T
        return y + w[n + ".bias"] if n + ".bias" in w else y

    out = [x]
    for i in range(vc.num_hidden_layers):
        p = f"encoder.layer.{i}."
        y = norm(x, p + "layernorm_before")
        q, k, v = lin(y, p + "attention.q_proj"), lin(y, p + "attention.k_proj"), lin(y, p + "attention.v_proj")
        if vc.use_qk_norm:  # over the whole embedding, before the head split
            q, k = rms(q, w[p + "attention.q_norm.weight"], 1e-6), rms(k, w[p + "attention.k_norm.weight"], 1e-6)
        S = q.shape[1]
        q, k, v = (t.view(T, S, H, D // H) for t in (q, k, v))
        s = torch.einsum("tqhd,tkhd->thqk", q, k) / math.sqrt(D // H)
        a = torch.einsum("thqk,tkhd->tqhd", torch.softmax(s, -1), v).reshape(T, S, D)
        x = x + w[p + "lambda_1"] * lin(a, p + "attention.projection_layer")
        y = norm(x, p + "layernorm_after")
        act = gelu_erf if vc.hidden_act == "gelu" else None
        x = x + w[p + "lambda_2"] * lin(act(lin(y, p + "mlp.fc1")), p + "mlp.fc2")
        out.append(x)
    return out


def shuffle_ref(feat: torch.Tensor) -> torch.Tensor:
    """Pixel shuffle (0.5) element by element: output token (a, b) of the half grid,
    channel m*2C + k*C + c = input token (2a+m, 2b+k), channel c."""
    T, N, C = feat.shape
    fs = int(math.isqrt(N))
    g = feat.reshape(T, fs, fs, C)
    out = torch.empty(T, fs // 2, fs // 2, 4 * C, dtype=feat.dtype)
    for a in range(fs // 2):
        for b in range(fs // 2):
            for m in range(2):
                for k in range(2):
                    out[:, a, b, m * 2 * C + k * C : m * 2 * C + (k + 1) * C] = g[:, 2 * a + m, 2 * b + k]
    return out.reshape(T, -1, 4 * C)


def vision_cfg(**over):
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=4,
              attention_bias=True, norm_type="layer_norm", use_qk_norm=False, layer_norm_eps=1e-6, hidden_act="gelu",
              use_mean_pooling=True, layer_scale_init_value=0.1)
    kw.update(over)
    return InternVLVisionConfig(**kw)


@case
def case_internvit_rms_qknorm():
    """InternViT-6B-style layer: RMSNorm, q/k norm, no qkv bias, final LayerNorm
    (use_mean_pooling false): every hidden state and last_hidden_state."""
    from transformers.models.internvl.modeling_internvl import InternVLVisionModel

    vc = vision_cfg(norm_type="rms_norm", use_qk_norm=True, attention_bias=False, use_mean_pooling=False, num_hidden_layers=3,
                    image_size=24, patch_size=6, attn_implementation="eager")
    model = InternVLVisionModel(vc).eval()
    perturb(model)
    sd = params32(model)
    m64 = f64_copy(model)
    pixels = torch.randn(2, 3, 24, 24, dtype=F32)
    out = m64(pixel_values=pixels.to(F64), output_hidden_states=True)
    tensors = {"pixel_values": pixels, **sd}
    checks = []
    ref: dict[str, list[torch.Tensor]] = {}

    def get() -> list[torch.Tensor]:
        if "r" not in ref:
            ref["r"] = internvit_ref(sd, vc, pixels.to(F64), "")
        return ref["r"]

    for i, t in enumerate(out.hidden_states):
        tensors[f"hidden_states.{i}"] = out32(t)
        # InternVLVisionRMSNorm, like T5LayerNorm, normalises in float32 even in float64
        checks.append((f"hidden_states.{i}", t, lambda i=i: get()[i], 2e-6))
    tensors["last_hidden_state"] = out32(out.last_hidden_state)
    checks.append(("last_hidden_state", out.last_hidden_state, lambda: ln(get()[-1], sd["layernorm.weight"].to(F64), sd["layernorm.bias"].to(F64), vc.layer_norm_eps), 2e-6))
    meta = {"vision_config": vc.to_json_string(use_diff=False).replace("\n", "")}
    return tensors, meta, checks


@case
def case_internvl():
    """InternVL3 tiny: InternViT (LayerNorm, qkv bias) + pixel shuffle + projector +
    Qwen2 with image tokens placed at the <IMG_CONTEXT> ids; right padding."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    img_id, per_tile = 120, 16  # 32x32 tiles, patch 4: 8x8 patches -> 4x4 tokens after the shuffle
    text = dict(model_type="qwen2", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=True,
                rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"})
    cfg = InternVLConfig(vision_config=vision_cfg().to_dict(), text_config=text, image_token_id=img_id, image_seq_length=per_tile,
                         downsample_ratio=0.5, projector_hidden_act="gelu", vision_feature_layer=-1,
                         vision_feature_select_strategy="default", attn_implementation="eager")
    model = InternVLForConditionalGeneration(cfg).eval()
    perturb(model)
    sd = params32(model, skip=("lm_head.",))
    m64 = f64_copy(model)

    # row 0: 1 tile; row 1: 2 tiles (tiles are consumed in order across the batch), right padding
    S = 8 + 2 * per_tile + 6
    ids = torch.randint(1, 100, (2, S), dtype=I64)
    mask = torch.ones(2, S, dtype=I64)
    ids[0, 3 : 3 + per_tile] = img_id
    ids[0, 3 + per_tile + 10 :] = 0
    mask[0, 3 + per_tile + 10 :] = 0
    ids[1, 2 : 2 + per_tile] = img_id
    ids[1, 5 + per_tile : 5 + 2 * per_tile] = img_id
    pixels = torch.randn(3, 3, 32, 32, dtype=F32)
    out = m64(input_ids=ids, attention_mask=mask, pixel_values=pixels.to(F64), output_hidden_states=True)
    vis = m64.model.vision_tower(pixel_values=pixels.to(F64), output_hidden_states=True)
    tensors = {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, **sd}
    tensors["image_mask"] = ids == img_id
    tensors["vision.last_hidden_state"] = out32(vis.last_hidden_state)
    tensors["image_features"] = out32(out.image_hidden_states)

    refs = {}

    def feats():
        if "f" not in refs:
            v = internvit_ref(sd, cfg.vision_config, pixels.to(F64), "model.vision_tower.")[-1][:, 1:]
            x = shuffle_ref(v)
            p = {k.removeprefix("model.multi_modal_projector."): t.to(F64) for k, t in sd.items() if k.startswith("model.multi_modal_projector.")}
            x = ln(x, p["layer_norm.weight"], p["layer_norm.bias"], 1e-5)  # nn.LayerNorm default eps
            x = gelu_erf(x @ p["linear_1.weight"].T + p["linear_1.bias"]) @ p["linear_2.weight"].T + p["linear_2.bias"]
            refs["f"] = x
        return refs["f"]

    def embeds():
        e = sd["model.language_model.embed_tokens.weight"].to(F64)[ids].clone()
        f = feats().reshape(-1, e.shape[-1])
        n = 0
        for b in range(ids.shape[0]):
            for s in range(ids.shape[1]):
                if ids[b, s] == img_id:
                    e[b, s] = f[n]
                    n += 1
        assert n == f.shape[0]
        return e

    checks = [("image_features", out.image_hidden_states, feats), ("hidden_states.0", out.hidden_states[0], embeds)]
    for i, t in enumerate(out.hidden_states):
        tensors[f"hidden_states.{i}"] = out32(t)
    meta = {
        "config": cfg.to_json_string(use_diff=False).replace("\n", ""),
        "image_token_id": img_id,
        "tokens_per_tile": per_tile,
        "tiles": "pixel_values rows 0 -> batch 0; rows 1, 2 -> batch 1 (in sequence order)",
        "padding": "right padding (attention_mask 0) in batch 0; every position is compared",
        "names": "transformers 5.x state_dict (model.vision_tower.*, model.multi_modal_projector.*, model.language_model.*)",
    }
    return tensors, meta, checks


# ----------------------------------------------------------------------------- tiling
# InternVL's dynamic tiling, reimplemented from the rule its README describes:
# candidate grids (i cols, j rows) with min_num <= i*j <= max_num, ordered by tile
# count (Python's stable sort of a set: equal counts keep the set's iteration
# order); the grid whose aspect ratio is closest to the image's wins; on an exact
# tie a later candidate wins when the image area exceeds half the grid's pixel
# area. The image is resized (PIL bicubic) to the grid, cut row-major into tiles,
# and a thumbnail (the whole image resized to one tile) follows when there is
# more than one tile.


def candidate_grids(min_num: int, max_num: int) -> list[tuple[int, int]]:
    s = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1) if min_num <= i * j <= max_num)
    return sorted(s, key=lambda r: r[0] * r[1])


def closest_grid(width: int, height: int, min_num: int, max_num: int, size: int) -> tuple[int, int]:
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for i, j in candidate_grids(min_num, max_num):
        diff = abs(aspect - i / j)
        if diff < best_diff:
            best, best_diff = (i, j), diff
        elif diff == best_diff and width * height > 0.5 * size * size * i * j:
            best = (i, j)
    return best


def tile_image(img, min_num: int, max_num: int, size: int, thumbnail: bool):
    from PIL import Image

    cols, rows = closest_grid(img.width, img.height, min_num, max_num, size)
    big = img.resize((cols * size, rows * size), Image.BICUBIC)
    tiles = [big.crop((c * size, r * size, (c + 1) * size, (r + 1) * size)) for r in range(rows) for c in range(cols)]
    if thumbnail and len(tiles) != 1:
        tiles.append(img.resize((size, size), Image.BICUBIC))
    return (cols, rows), tiles


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_pixel_values(tiles) -> torch.Tensor:
    """ToTensor (/255) + Normalize(ImageNet), as InternVL's build_transform; float64."""
    import numpy as np

    arr = torch.from_numpy(np.stack([np.asarray(t, dtype=np.uint8) for t in tiles])).to(F64)  # [n,h,w,3]
    x = arr.permute(0, 3, 1, 2) / 255.0
    return (x - torch.tensor(IMAGENET_MEAN, dtype=F64)[:, None, None]) / torch.tensor(IMAGENET_STD, dtype=F64)[:, None, None]


TILING_CONFIGS = [(1, 12, 448), (1, 6, 448), (1, 10, 448), (2, 8, 448), (1, 4, 32)]


@case
def case_tiling_select():
    """Chosen grid (cols, rows) for many image sizes under several (min, max, size)."""
    g = torch.Generator().manual_seed(0)
    sizes = [(int(w), int(h)) for w, h in torch.randint(1, 4000, (300, 2), generator=g)]
    sizes += [(int(w), int(h)) for w, h in torch.randint(1, 60, (100, 2), generator=g)]
    # exact ties between grids (aspect halfway between two candidate ratios), small and large areas
    sizes += [(300, 200), (1500, 1000), (5, 4), (500, 400), (1000, 800), (125, 100), (3000, 2400), (7, 4), (700, 400), (4200, 2400),
              (448, 448), (896, 448), (448, 896), (1, 1), (1, 4000), (4000, 1), (2, 3), (896, 1344), (1344, 896)]
    tensors = {"sizes": torch.tensor(sizes, dtype=I64)}
    checks = []
    meta = {"configs": ";".join(f"{a},{b},{c}" for a, b, c in TILING_CONFIGS), "layout": "grid.<min>.<max>.<size>: [n, 2] (cols, rows) for sizes[n] (width, height)"}
    for mn, mx, sz in TILING_CONFIGS:
        grids = torch.tensor([closest_grid(w, h, mn, mx, sz) for w, h in sizes], dtype=I64)
        tensors[f"grid.{mn}.{mx}.{sz}"] = grids
        tensors[f"candidates.{mn}.{mx}"] = torch.tensor(candidate_grids(mn, mx), dtype=I64)

        def brute(mn=mn, mx=mx, sz=sz, grids=grids):
            # the README rule restated: smallest |aspect diff|; among exact ties the
            # last (in candidate order) that passes the area test, else the first
            out = []
            for (w, h), got in zip(sizes, grids.tolist()):
                cands = candidate_grids(mn, mx)
                diffs = [abs(w / h - i / j) for i, j in cands]
                m = min(diffs)
                tied = [c for c, d in zip(cands, diffs) if d == m]
                win = tied[0]
                for c in tied[1:]:
                    if w * h > 0.5 * sz * sz * c[0] * c[1]:
                        win = c
                out.append(win)
            return torch.tensor(out, dtype=I64)

        checks.append((f"grid.{mn}.{mx}.{sz}", grids, brute))
    return tensors, meta, checks


@case
def case_tiling_pixels():
    """PIL bicubic resizes and whole tiling outputs on small random RGB images (tile 16)."""
    from PIL import Image
    import numpy as np

    g = torch.Generator().manual_seed(1)
    tensors, checks = {}, []
    imgs = [(37, 23), (50, 90), (16, 16), (13, 100), (64, 40)]
    for n, (w, h) in enumerate(imgs):
        arr = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
        # smooth half of the images so the resampling is not only noise
        if n % 2:
            yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            arr = ((arr.to(F64) * 0.3 + 90 + 80 * torch.sin(xx / 5.0)[..., None] + 60 * torch.cos(yy / 7.0)[..., None]).clamp(0, 255)).to(torch.uint8)
        img = Image.fromarray(arr.numpy(), "RGB")
        tensors[f"image.{n}"] = arr.to(F32)  # uint8 values, stored exactly as F32
        (cols, rows), tiles = tile_image(img, 1, 6, 16, True)
        tensors[f"grid.{n}"] = torch.tensor([cols, rows], dtype=I64)
        tensors[f"tiles_u8.{n}"] = torch.from_numpy(np.stack([np.asarray(t, dtype=np.uint8) for t in tiles])).to(F32)
        pv = to_pixel_values(tiles)
        tensors[f"pixel_values.{n}"] = out32(pv)
        # plain resizes, down and up, both axes independent
        for k, (tw, th) in enumerate([(max(1, w // 3), h + 7), (w * 2 + 1, max(1, h // 2)), (5, 5)]):
            tensors[f"resize.{n}.{k}"] = torch.from_numpy(np.asarray(img.resize((tw, th), Image.BICUBIC), dtype=np.uint8).copy()).to(F32)
    meta = {"images": ";".join(f"{w}x{h}" for w, h in imgs), "tiling": "min 1, max 6, tile 16, thumbnail", "resize": "PIL Image.resize BICUBIC (uint8 fixed point)",
            "layout": "image.<n> [h,w,3]; tiles_u8.<n> [tiles,16,16,3]; pixel_values.<n> [tiles,3,16,16]; resize.<n>.<k> [th,tw,3] for (w//3, h+7), (2w+1, h//2), (5, 5)"}
    return tensors, meta, checks


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("cases", nargs="*", help=f"subset of cases (default: all): {' '.join(CASES)}")
    args = ap.parse_args()
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {' '.join(unknown)}")
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)

    total = 0
    for name in args.cases or CASES:
        torch.manual_seed(0)
        tensors, meta, checks = CASES[name]()
        for tname, t in tensors.items():
            assert t.dtype in (F32, I64, torch.bool), (name, tname, t.dtype)
            if t.dtype == F32:
                assert torch.isfinite(t).all(), (name, tname)
                assert t.abs().max() > 0.1, (name, tname, "suspiciously near zero")
        if not args.no_verify:
            for oname, ref, fn, *tol in checks:
                alt = fn()
                if ref.dtype == I64:
                    ok = torch.equal(alt, ref)
                    err = "mismatch"
                else:
                    e = (alt - ref).abs().max().item()
                    ok = e <= (tol[0] if tol else 1e-9) * max(1.0, ref.abs().max().item())
                    err = f"max abs diff {e:.3e}"
                if not ok:
                    print(f"VERIFY FAIL {name}.{oname}: {err}", file=sys.stderr)
                    return 1
        metadata = {"case": name, "generator": "scripts/py/gen_vlm_vision_fixtures.py"}
        metadata.update({k: fmt(v) for k, v in meta.items()})
        path = os.path.join(args.out, f"{name}.safetensors")
        save_safetensors(tensors, path, metadata)
        size = os.path.getsize(path)
        total += size
        print(f"wrote {os.path.relpath(path, REPO_ROOT)} ({size} B, {len(tensors)} tensors)")
    print(f"total {total} bytes" + ("" if args.no_verify else "; all cross-checks passed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
