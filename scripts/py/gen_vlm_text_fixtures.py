#!/usr/bin/env python3
"""Generate transformers parity fixtures for the decoder-only LLM encoders in graphs/vlm/
(test/fixtures/vlm-text/), used by test/vlm-text.test.ts.

Usage (from the repo root, inside the venv made by `scripts/py/setup-venv.sh --hf`):
    python scripts/py/gen_vlm_text_fixtures.py [--out DIR] [--no-verify] [case ...]

Each case is a tiny random Hugging Face model (transformers' own classes), written as a
checkpoint folder <case>/ with
  * config.json        config.save_pretrained(): only the keys that differ from the class
                       defaults, as on the Hub, so readers must apply the defaults;
  * model.safetensors  the *ForCausalLM state dict (tied lm_head left out), HF names;
  * io.safetensors     inputs and every output_hidden_states entry (see below).

Weights are re-drawn from a seeded generator with sizes that make every block matter
(HF's 0.02 init would leave the residual stream ~ the embeddings): linear weights
N(0, 1/fan_in), biases 0.3 N(0, 1), embeddings N(0, 1), RMSNorm scales 1 + 0.3 N(0, 1)
(Gemma stores scale - 1: 0.3 N(0, 1)). The reference runs in float64 (attn_implementation
"eager"; transformers still takes RoPE cos/sin, RMSNorm statistics and softmax in float32
there) and is stored as float32.

io.safetensors:
  input_ids I64 [3, 10], attention_mask I64 [3, 10]: row 0 unpadded, row 1 right-padded
      (6 tokens), row 2 left-padded (3 pads, 7 tokens); pad id = config pad_token_id or 0.
  hidden_states.<i> F32 [3, 10, hidden], i = 0..L: transformers' output_hidden_states with
      its default positions (arange, whatever the mask).
  mask_positions.hidden_states.<i>: the same with position_ids = cumsum(mask) - 1, 1 at
      padding (what generate() passes).
  valid_mask BOOL [3, 10]: where hidden_states.<i> (i >= 1) are meaningful. Real tokens always;
      a pad position only if its attention row sees some key in every layer kind. Left pads
      see no key (causal + padding), so HF's value there depends on the attention kernel
      (eager: uniform average of all keys; sdpa: something else).
  rope.<kind>.inv_freq F32: the model's rotary inv_freq buffers (full, sliding), which the TS
      side recomputes from config.json (llama3 / linear scaling included).
  M-RoPE cases only: position_ids I64 [3, 3, 10] (t, h, w streams that differ on an "image"
      block) and input_positions.hidden_states.<i>, the model run with them.
  qwen3, gemma3_text only: kv.<layer>.key / .value F32 [3, KV, 10, head_dim], past_key_values of
      the default run (keys after q/k norm and RoPE; a config-less DynamicCache keeps every key).

Unless --no-verify is given, the script cross-checks, on valid positions: the float64 eager
run against a float32 run with transformers' default attention (sdpa), hidden_states[L] ==
last_hidden_state, the right-padded row (default positions) and the left-padded row (mask
positions) against unpadded runs of their tokens alone; it fails if any disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_composite_fixtures import fmt, save_safetensors  # noqa: E402  (deterministic writer)

import transformers  # noqa: E402
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM  # noqa: E402
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig  # noqa: E402
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLTextModel  # noqa: E402
from transformers import Qwen3Config, Qwen3ForCausalLM  # noqa: E402
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLTextConfig  # noqa: E402
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "test", "fixtures", "vlm-text")

F64 = torch.float64
F32 = torch.float32
B, S = 3, 10
LENGTHS = [(0, 10), (0, 6), (3, 10)]  # [start, end) of the real tokens per row


# ------------------------------------------------------------------------------- cases


def case_qwen2():
    """Qwen2: q/k/v bias, GQA 4/2, rope_theta 5000, eps 1e-5; use_sliding_window with
    max_window_layers 2, so layers 2, 3 use a 4-token window (Qwen2Config semantics)."""
    cfg = Qwen2Config(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
        rope_theta=5000.0, use_sliding_window=True, sliding_window=4, max_window_layers=2,
        tie_word_embeddings=True, pad_token_id=0,
    )
    return cfg, Qwen2ForCausalLM, "model.", {}


def case_qwen2_5_vl_text():
    """Qwen2.5-VL text model: M-RoPE over mrope_section [4, 2, 2] (head_dim 16), GQA 2/1."""
    cfg = Qwen2_5_VLTextConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-6,
        rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2]}, rope_theta=10000.0,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return cfg, Qwen2_5_VLTextModel, "", {"mrope": True}


def case_qwen3():
    """Qwen3: q_norm/k_norm over the head dim before RoPE, head_dim 16 != hidden / heads (8),
    attention_bias on q/k/v/o, GQA 4/2."""
    cfg = Qwen3Config(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, attention_bias=True,
        rope_theta=1000000.0, tie_word_embeddings=True, pad_token_id=0,
    )
    return cfg, Qwen3ForCausalLM, "model.", {"kv": True}


def case_qwen3_vl_text():
    """Qwen3-VL text model: interleaved M-RoPE over mrope_section [4, 2, 2] (head_dim 16), q/k
    norms, GQA 2/1."""
    cfg = Qwen3VLTextConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-6,
        rope_scaling={"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True},
        rope_theta=5000000.0, pad_token_id=0,
    )
    return cfg, Qwen3VLTextModel, "", {"mrope": True}


def case_llama3():
    """Llama 3.1-style rope: llama3 scaling (factor 8, low 1, high 4, original 64) at theta
    500000, head_dim 16: frequency 0 kept, 1 smoothed, 2..7 divided by 8. GQA 2/1."""
    cfg = LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-5,
        max_position_embeddings=256,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        rope_theta=500000.0, tie_word_embeddings=True, pad_token_id=0,
    )
    return cfg, LlamaForCausalLM, "model.", {}


def case_gemma3_text():
    """Gemma-3 text: layers sliding, sliding, full, sliding (window 4, local theta 10000);
    the full layer has theta 1e6 with linear x8 scaling as Gemma-3 4B+; query_pre_attn_scalar
    24 (not head_dim 16); embeddings x sqrt(32); sandwich norms; q/k norms; gelu_tanh."""
    cfg = Gemma3TextConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=24,
        sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        rope_scaling={"rope_type": "linear", "factor": 8.0}, pad_token_id=0,
    )
    return cfg, Gemma3ForCausalLM, "model.", {"kv": True}


def case_gemma3_softcap_bidir():
    """Gemma-3 variant (EmbeddingGemma-like): use_bidirectional_attention (full layers see every
    key, sliding ones |q - k| < 6 // 2 + 1 = 4), 4 heads / 2 kv, and attn_logit_softcapping 2.0,
    which transformers' Gemma3Attention stores but never applies (checked below)."""
    cfg = Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8,
        sliding_window=6, layer_types=["sliding_attention", "full_attention"],
        attn_logit_softcapping=2.0, use_bidirectional_attention=True, pad_token_id=0,
    )
    return cfg, Gemma3ForCausalLM, "model.", {}


CASES = {
    "qwen2": case_qwen2,
    "qwen2_5_vl_text": case_qwen2_5_vl_text,
    "qwen3": case_qwen3,
    "qwen3_vl_text": case_qwen3_vl_text,
    "llama3": case_llama3,
    "gemma3_text": case_gemma3_text,
    "gemma3_softcap_bidir": case_gemma3_softcap_bidir,
}


# Hub-style config.json files (as published: legacy rope keys, Gemma-3 VLM text_config with
# most keys left to the class defaults, Qwen2.5-VL flat). hub_configs.json records what
# transformers makes of each (head_dim, layer types, windows, rope inverse frequencies, ...)
# so the TS parser is checked against transformers' own parsing at real sizes, no weights.
HUB_CONFIGS = {
    "Qwen2.5-7B-Instruct": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
        "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944,
        "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
        "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 152064,
    },
    "Llama-3.1-8B": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
        "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "vocab_size": 128256,
    },
    "gemma-3-12b-it": {
        "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
        "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
        "model_type": "gemma3",
        "text_config": {"hidden_size": 3840, "intermediate_size": 15360, "model_type": "gemma3_text",
                        "num_attention_heads": 16, "num_hidden_layers": 48, "num_key_value_heads": 8,
                        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
        "torch_dtype": "bfloat16",
        "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                          "patch_size": 14, "vision_use_head": False},
    },
    "gemma-3-1b-it": {
        "architectures": ["Gemma3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": None, "bos_token_id": 2, "eos_token_id": [1, 106], "final_logit_softcapping": None,
        "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "initializer_range": 0.02,
        "intermediate_size": 6912, "max_position_embeddings": 32768, "model_type": "gemma3_text",
        "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1, "pad_token_id": 0,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000, "rope_scaling": None,
        "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6, "torch_dtype": "bfloat16",
        "use_cache": True, "vocab_size": 262144,
    },
    "Qwen3-VL-4B-Instruct": {
        "architectures": ["Qwen3VLForConditionalGeneration"], "image_token_id": 151655, "model_type": "qwen3_vl",
        "text_config": {
            "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
            "head_dim": 128, "hidden_act": "silu", "hidden_size": 2560, "initializer_range": 0.02,
            "intermediate_size": 9728, "max_position_embeddings": 262144, "model_type": "qwen3_vl_text",
            "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
            "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
            "rope_theta": 5000000, "tie_word_embeddings": True, "use_cache": True, "vocab_size": 151936,
        },
        "tie_word_embeddings": True, "video_token_id": 151656,
        "vision_config": {"deepstack_visual_indexes": [5, 11, 17], "depth": 24, "hidden_act": "gelu_pytorch_tanh",
                          "hidden_size": 1024, "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 4096,
                          "model_type": "qwen3_vl", "num_heads": 16, "num_position_embeddings": 2304,
                          "out_hidden_size": 2560, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2},
        "vision_end_token_id": 151653, "vision_start_token_id": 151652,
    },
    "Qwen2.5-VL-7B-Instruct": {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
        "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000,
        "max_window_layers": 28, "model_type": "qwen2_5_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
        "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
        "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                          "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                          "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                          "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064,
    },
}


def hub_expectations() -> dict:
    """transformers' reading of each HUB_CONFIGS entry, as the values the TS DecoderConfig holds."""
    from transformers import AutoConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RotaryEmbedding
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRotaryEmbedding
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

    out = {}
    for name, d in HUB_CONFIGS.items():
        cfg = AutoConfig.for_model(**json.loads(json.dumps(d)))
        t = cfg.get_text_config()
        mt = d["model_type"]
        if mt == "qwen2_5_vl":
            head_dim = t.hidden_size // t.num_attention_heads  # Qwen2_5_VLAttention
            rot = {"full": Qwen2_5_VLRotaryEmbedding(t)}
        elif mt == "qwen3_vl":
            head_dim = t.head_dim
            rot = {"full": Qwen3VLTextRotaryEmbedding(t)}
        elif mt.startswith("gemma3"):
            head_dim = t.head_dim
            rot = {"gemma": Gemma3RotaryEmbedding(t)}
        else:
            head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
            rot = {"full": (LlamaRotaryEmbedding if mt == "llama" else Qwen2RotaryEmbedding)(t)}
        if "gemma" in rot:
            inv = {"full": rot["gemma"].full_attention_inv_freq, "sliding": rot["gemma"].sliding_attention_inv_freq}
            scaling = t.query_pre_attn_scalar ** -0.5
        else:
            inv = {"full": rot["full"].inv_freq, "sliding": rot["full"].inv_freq}
            scaling = head_dim ** -0.5
        types = getattr(t, "layer_types", None) or ["full_attention"] * t.num_hidden_layers
        act = getattr(t, "hidden_activation", None) or t.hidden_act
        exp = {
            "vocab": t.vocab_size, "hidden": t.hidden_size, "layers": t.num_hidden_layers,
            "heads": t.num_attention_heads, "kvHeads": t.num_key_value_heads, "headDim": head_dim,
            "intermediate": t.intermediate_size, "eps": t.rms_norm_eps, "hfAct": act, "attnScale": scaling,
            "layerTypes": ["sliding" if x == "sliding_attention" else "full" for x in types],
            "slidingWindow": getattr(t, "sliding_window", None) if "sliding_attention" in types else None,
            "invFreq": {k: [float(x) for x in v.to(F32)] for k, v in inv.items()},
            "mropeSection": (rot["full"].mrope_section if mt in ("qwen2_5_vl", "qwen3_vl") else None),
            "mropeInterleaved": mt == "qwen3_vl",
            "qkNorm": mt.startswith("qwen3") or mt.startswith("gemma3"),
        }
        out[name] = {"config": d, "expect": exp}
    return out


# ------------------------------------------------------------------------------ helpers


def randomize(model: torch.nn.Module, gemma: bool, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                v = 0.3 * torch.randn(p.shape, generator=gen) + (0.0 if gemma else 1.0)
            elif name.endswith("embed_tokens.weight"):
                v = torch.randn(p.shape, generator=gen)
            elif name.endswith(".bias"):
                v = 0.3 * torch.randn(p.shape, generator=gen)
            elif p.ndim == 2:
                v = torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
            else:
                raise AssertionError(f"unexpected parameter {name} {tuple(p.shape)}")
            p.copy_(v.to(F32).to(p.dtype))


def make_inputs(vocab: int, pad: int, gen: torch.Generator):
    ids = torch.randint(1, vocab, (B, S), generator=gen)
    ids[ids == pad] = 1 if pad != 1 else 2
    mask = torch.zeros(B, S, dtype=torch.int64)
    for b, (s, e) in enumerate(LENGTHS):
        mask[b, s:e] = 1
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
    return ids, mask


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    pos = mask.cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def mrope_positions(gen: torch.Generator) -> torch.Tensor:
    """t = arange; h, w follow t except on an 'image' block (tokens 2..5 of each row) that gets
    a 2 x 2 grid: t stays at the block start, h/w = start + row/col."""
    t = torch.arange(S).expand(B, S).clone()
    pos = torch.stack([t.clone(), t.clone(), t.clone()])
    for b in range(B):
        st = 2 + int(torch.randint(0, 3, (1,), generator=gen))
        for j in range(4):
            pos[0, b, st + j] = st
            pos[1, b, st + j] = st + j // 2
            pos[2, b, st + j] = st + j % 2
    return pos


def valid_mask(cfg, mask: torch.Tensor) -> torch.Tensor:
    """Real tokens, and pad positions whose attention row is non-empty in every layer kind."""
    keys = mask.bool()
    q = torch.arange(S)[:, None]
    k = torch.arange(S)[None, :]
    bidir = bool(getattr(cfg, "use_bidirectional_attention", False))
    rows = []
    for kind in set(getattr(cfg, "layer_types", None) or ["full_attention"]):
        allowed = torch.ones(S, S, dtype=torch.bool) if bidir else (k <= q)
        if kind == "sliding_attention":
            w = cfg.sliding_window  # already the effective window for bidirectional configs
            allowed = ((q - k).abs() < w) if bidir else (allowed & (q - k < w))
        rows.append((allowed[None] & keys[:, None, :]).any(-1))  # [B, S]
    ok = torch.stack(rows).all(0)
    return keys | ok


def run(model, ids, mask, position_ids=None, cache=False):
    # a config-less DynamicCache keeps every key (the model's own would trim sliding layers to the window)
    pkv = transformers.DynamicCache() if cache else None
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, output_hidden_states=True, use_cache=cache, past_key_values=pkv)
    if cache:
        return list(out.hidden_states), out.last_hidden_state, [(l.keys, l.values) for l in out.past_key_values.layers]
    return list(out.hidden_states), out.last_hidden_state


def rel_err(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    """max |a - b| / max |b| over the positions `where` ([B, S] bool)."""
    a, b = a[where].to(F64), b[where].to(F64)
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# --------------------------------------------------------------------------------- main


def generate(name: str, out_dir: str, verify: bool) -> int:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    cfg, cls, prefix, opts = CASES[name]()
    cfg._attn_implementation = "sdpa"
    model = cls(cfg).eval()
    gemma = cfg.model_type.startswith("gemma")
    randomize(model, gemma, gen)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    ids, mask = make_inputs(cfg.vocab_size, pad, gen)
    valid = valid_mask(cfg, mask)
    L = cfg.num_hidden_layers

    m64 = cls(cfg).eval()
    m64.load_state_dict(model.state_dict())
    m64 = m64.to(F64)
    base64 = m64.model if hasattr(m64, "model") else m64

    hs, last, kv = run(base64, ids, mask, cache=True)
    assert len(hs) == L + 1, (name, len(hs))
    tensors: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": mask, "valid_mask": valid}
    if opts.get("kv"):  # keys after q/k norm and RoPE, values: [B, KV, S, head_dim] per layer
        assert len(kv) == L, (name, len(kv))
        for i, (k, v) in enumerate(kv):
            tensors[f"kv.{i}.key"] = k.to(F32).contiguous()
            tensors[f"kv.{i}.value"] = v.to(F32).contiguous()
    for i, h in enumerate(hs):
        tensors[f"hidden_states.{i}"] = h.to(F32).contiguous()
    mpos = mask_positions(mask)
    hs_m, _ = run(base64, ids, mask, mpos)
    for i, h in enumerate(hs_m):
        tensors[f"mask_positions.hidden_states.{i}"] = h.to(F32).contiguous()
    if opts.get("mrope"):
        pos3 = mrope_positions(gen)
        hs_p, _ = run(base64, ids, mask, pos3)
        tensors["position_ids"] = pos3.contiguous()
        for i, h in enumerate(hs_p):
            tensors[f"input_positions.hidden_states.{i}"] = h.to(F32).contiguous()
    rot = base64.rotary_emb
    if hasattr(rot, "inv_freq"):
        tensors["rope.full.inv_freq"] = rot.inv_freq.to(F32).contiguous()
        tensors["rope.sliding.inv_freq"] = rot.inv_freq.to(F32).contiguous()
    else:  # Gemma-3: one buffer per layer type
        tensors["rope.full.inv_freq"] = rot.full_attention_inv_freq.to(F32).contiguous()
        tensors["rope.sliding.inv_freq"] = rot.sliding_attention_inv_freq.to(F32).contiguous()

    if verify:
        checks = []
        # hidden_states[L] is last_hidden_state (after the final norm)
        checks.append(("hidden_states[L] == last_hidden_state", (hs[L] - last).abs().max().item(), 0.0))
        # float32 + default attention implementation (sdpa) agrees on valid positions
        cfg32 = type(cfg).from_dict(cfg.to_dict())
        cfg32._attn_implementation = "eager"
        s32 = cls(cfg32).eval()
        s32.load_state_dict(model.state_dict())
        b32 = s32.model if hasattr(s32, "model") else s32
        hs32, _ = run(b32, ids, mask)
        for i in range(1, L + 1):
            checks.append((f"eager fp32 vs sdpa fp64 hidden_states[{i}]", rel_err(hs32[i], hs[i], valid), 1e-5))
        # right padding leaves row 1's tokens as an unpadded run; mask positions do so for row 2
        for row, pos, label in [(1, None, "right-padded row, default positions"), (2, mpos, "left-padded row, mask positions")]:
            s, e = LENGTHS[row]
            solo, _ = run(base64, ids[row:row + 1, s:e], mask[row:row + 1, s:e])
            batch = hs_m if pos is not None else hs
            sel = torch.ones(1, e - s, dtype=torch.bool)
            for i in range(1, L + 1):
                checks.append((f"{label} vs unpadded, hidden_states[{i}]", rel_err(batch[i][row:row + 1, s:e], solo[i], sel), 1e-6))
        # Gemma-3 ignores attn_logit_softcapping: the same weights without it give the same states
        if getattr(cfg, "attn_logit_softcapping", None) is not None:
            cfg_nc = type(cfg).from_dict(cfg.to_dict())
            cfg_nc.attn_logit_softcapping = None
            cfg_nc._attn_implementation = "sdpa"
            nc = cls(cfg_nc).eval()
            nc.load_state_dict(model.state_dict())
            nc = nc.to(F64)
            hs_nc, _ = run(nc.model if hasattr(nc, "model") else nc, ids, mask)
            checks.append(("attn_logit_softcapping is a no-op in transformers", max((a - b).abs().max().item() for a, b in zip(hs_nc, hs)), 0.0))
        bad = [c for c in checks if not c[1] <= c[2]]
        worst = max(c[1] for c in checks[1:])
        print(f"  {name}: {len(checks)} cross-checks, worst relative {worst:.2e}")
        for c in bad:
            print(f"VERIFY FAIL {name}: {c[0]}: {c[1]:.3e} > {c[2]:.0e}", file=sys.stderr)
        if bad:
            return 1

    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_save = type(cfg).from_dict(cfg.to_dict())
        cfg_save.architectures = [cls.__name__]
        cfg_save.save_pretrained(tmp)
        shutil.copyfile(os.path.join(tmp, "config.json"), os.path.join(case_dir, "config.json"))
    sd = {k: v.to(F32).contiguous() for k, v in model.state_dict().items() if not k.startswith("lm_head.")}
    if prefix:
        assert all(k.startswith(prefix) for k in sd), (name, [k for k in sd if not k.startswith(prefix)][:3])
    meta = {"generator": "scripts/py/gen_vlm_text_fixtures.py", "case": name, "model_type": cfg.model_type,
            "transformers": transformers.__version__}
    save_safetensors(sd, os.path.join(case_dir, "model.safetensors"), {"format": "pt"})
    io_meta = dict(meta)
    io_meta.update({"num_hidden_layers": fmt(L), "rows": "0 unpadded; 1 right-padded (6 tokens); 2 left-padded (3 pads, 7 tokens)",
                    "reference": "float64 eager, stored float32", "doc": (CASES[name].__doc__ or "").strip().replace("\n", " ")})
    save_safetensors(tensors, os.path.join(case_dir, "io.safetensors"), io_meta)
    size = sum(os.path.getsize(os.path.join(case_dir, f)) for f in os.listdir(case_dir))
    print(f"wrote {os.path.relpath(case_dir, REPO_ROOT)}/ ({size} B): {len(sd)} weights, {L} layers")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--no-verify", action="store_true", help="skip the cross-checks")
    ap.add_argument("cases", nargs="*", help=f"subset of cases (default: all): {' '.join(CASES)}")
    args = ap.parse_args()
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {' '.join(unknown)}")
    torch.set_grad_enabled(False)
    transformers.logging.set_verbosity_error()
    for name in args.cases or CASES:
        if generate(name, args.out, not args.no_verify):
            return 1
    if not args.cases:
        path = os.path.join(args.out, "hub_configs.json")
        with open(path, "w") as fh:
            fh.write(json.dumps(hub_expectations(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {os.path.relpath(path, REPO_ROOT)} ({os.path.getsize(path)} B): {len(HUB_CONFIGS)} Hub configs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
