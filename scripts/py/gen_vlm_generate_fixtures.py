#!/usr/bin/env python3
"""Generate transformers `generate` fixtures for the VLM runtime (test/fixtures/vlm-gen/), used by
test/vlm-generate.test.ts and test/vlm-package.test.ts.

Usage (from the repo root, inside the venv made by `scripts/py/setup-venv.sh --hf`):
    python scripts/py/gen_vlm_generate_fixtures.py [--out DIR] [case ...]
(run scripts/py/gen_vlm_tokenizer_fixtures.py first: each case copies a family tokenizer.)

Each case folder is a complete tiny Hugging Face model folder, as `import-hf` reads it:
  config.json, generation_config.json  save_pretrained() of a tiny random model (eos / pad ids)
  model.safetensors                    the state dict with the checkpoint names; a tied lm_head
                                       left out
  tokenizer.json, tokenizer_config.json (+ chat_template.jinja)  from test/fixtures/vlm-tok/<family>;
                                       the model's vocab is the tokenizer's
  generate.safetensors                 what transformers produced (below); metadata holds the
                                       prompts' text, the generation settings and the margins
Cases:
  qwen2    Qwen2ForCausalLM, q/k/v bias, GQA, untied lm_head        (tokenizer qwen2)
  qwen3    Qwen3ForCausalLM, q/k norms, head_dim != hidden / heads   (tokenizer qwen3)
  llama    LlamaForCausalLM, llama3 rope scaling, untied             (tokenizer llama3)
  gemma3   Gemma3ForCausalLM, sliding window 4 (prompts are longer), final_logit_softcapping 30,
           tied embeddings                                           (tokenizer gemma3)
  internvl InternVLForConditionalGeneration: tiny InternViT (32 px tiles, patch 4 -> 16 tokens per
           tile) + Qwen2; row 0 one image of 2 tiles, row 1 one image of 1 tile (tokenizer internvl)

generate.safetensors:
  input_ids, attention_mask I64 [3, S] (InternVL: [2, S]): the prompts (chat template with a
      system prompt, add_generation_prompt), LEFT-padded with the pad id, as transformers wants
      for decoder-only generation
  prompt_lengths I64 [B]
  greedy.sequences I64 [B, S + N]: generate(do_sample=False, max_new_tokens=N), eos =
      generation_config's (chosen as a token the first row produces mid-way, so stopping and
      padding after eos are exercised)
  greedy.logits F32 [N, B, V]: output_logits (raw, before processors) per step
  solo.<b>.sequences I64 [1, len_b + N]: each prompt alone, unpadded (the right-padding check)
  rep.sequences I64: greedy with repetition_penalty 1.3
  pixel_values F32 [tiles, 3, 32, 32] (InternVL)
  proc.*: logits processors on random scores: proc.input_ids I64 [2, 7], proc.scores F32 [2, V],
      proc.<name> F32 [2, V] after transformers' RepetitionPenaltyLogitsProcessor(1.3),
      TemperatureLogitsWarper(0.7), TopKLogitsWarper(5), TopPLogitsWarper(0.8), and the chain
      rep -> temperature -> top_k -> top_p as generate() orders them (qwen2 case only)
Weights are redrawn so logits are well separated (linear N(0, 1/fan_in), embeddings N(0, 1), norm
scales 1 + 0.3 N(0, 1)); the script checks every greedy step's top-2 logit margin (metadata
`min_margin`) so float32 rounding cannot flip an argmax.
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
from gen_composite_fixtures import save_safetensors  # noqa: E402

import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "test", "fixtures", "vlm-gen")
TOK_DIR = os.path.join(REPO_ROOT, "test", "fixtures", "vlm-tok")
F32, I64 = torch.float32, torch.int64

SYSTEM = "Rewrite the user's prompt as a detailed image description."
PROMPTS = ["a red circle", "a green triangle above a blue square at sunset", "a cat"]
N_NEW = 10
MIN_MARGIN = 1e-3


def randomize(model: torch.nn.Module, gemma: bool, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 1 and (name.endswith("norm.weight") or "norm" in name.split(".")[-2]):
                v = 0.3 * torch.randn(p.shape, generator=gen) + (0.0 if gemma and "vision" not in name else 1.0)
            elif name.endswith("embed_tokens.weight"):
                # Gemma scales embeddings by sqrt(hidden): draw them so the scaled ones are ~N(0, 1),
                # else the tied head just echoes the last token
                v = torch.randn(p.shape, generator=gen) / (p.shape[1] ** 0.5 if gemma else 1.0)
            elif name.endswith(".bias") or p.ndim == 1:
                v = 0.3 * torch.randn(p.shape, generator=gen)
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                v = torch.randn(p.shape, generator=gen) / fan_in**0.5
            else:
                raise AssertionError(f"unexpected parameter {name} {tuple(p.shape)}")
            p.copy_(v.to(p.dtype))


def text_cfg(family: str, vocab: int, pad: int, eos: int, bos: int | None):
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(vocab_size=vocab, pad_token_id=pad, eos_token_id=eos, bos_token_id=bos, max_position_embeddings=256)
    if family == "qwen2":
        return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                           rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False, **common)
    if family == "qwen3":
        return Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=16, rope_theta=1000000.0, tie_word_embeddings=False, **common)
    if family == "llama":
        return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, rms_norm_eps=1e-5,
                           rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 16},
                           rope_theta=500000.0, tie_word_embeddings=False, **common)
    if family == "gemma3":
        return Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1,
                                head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                                layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
                                final_logit_softcapping=30.0, tie_word_embeddings=True, **common)
    raise AssertionError(family)


CASES = {
    # case: (tokenizer family, model family)
    "qwen2": ("qwen2", "qwen2"),
    "qwen3": ("qwen3", "qwen3"),
    "llama": ("llama3", "llama"),
    "gemma3": ("gemma3", "gemma3"),
    "internvl": ("internvl", "internvl"),
}


def build_model(case: str, tok):
    from transformers import Gemma3ForCausalLM, InternVLConfig, InternVLForConditionalGeneration, LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

    vocab = len(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    bos = tok.bos_token_id
    eos = tok.eos_token_id
    if case == "internvl":
        from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

        vc = InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=4,
                                  attention_bias=True, norm_type="layer_norm", use_qk_norm=False, layer_norm_eps=1e-6, hidden_act="gelu",
                                  use_mean_pooling=True, layer_scale_init_value=0.1)
        text = dict(model_type="qwen2", vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
                    rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"}, pad_token_id=pad, eos_token_id=eos)
        cfg = InternVLConfig(vision_config=vc.to_dict(), text_config=text, image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
                             image_seq_length=16, downsample_ratio=0.5, projector_hidden_act="gelu", vision_feature_layer=-1,
                             vision_feature_select_strategy="default", tie_word_embeddings=False, pad_token_id=pad, eos_token_id=eos)
        cls = InternVLForConditionalGeneration
    else:
        cfg = text_cfg(case, vocab, pad, eos, bos)
        cls = {"qwen2": Qwen2ForCausalLM, "qwen3": Qwen3ForCausalLM, "llama": LlamaForCausalLM, "gemma3": Gemma3ForCausalLM}[case]
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = cls(cfg).eval()
    randomize(model, case == "gemma3", torch.Generator().manual_seed(4321))
    model.tie_weights()
    return model, cfg


def prompts(case: str, tok) -> tuple[list[list[int]], list[str]]:
    texts = []
    if case == "internvl":
        tiles = [2, 1]
        for p, t in zip(PROMPTS[:2], tiles):
            msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}]
            s = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            a, b = s.split("<IMG_CONTEXT>")
            texts.append(a + "<img>" + "<IMG_CONTEXT>" * (16 * t) + "</img>" + b)
    else:
        for p in PROMPTS:
            msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}]
            texts.append(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts], texts


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    S = max(len(r) for r in rows)
    ids = torch.full((len(rows), S), pad, dtype=I64)
    mask = torch.zeros(len(rows), S, dtype=I64)
    for b, r in enumerate(rows):
        ids[b, S - len(r):] = torch.tensor(r)
        mask[b, S - len(r):] = 1
    return ids, mask


def run_generate(model, ids, mask, extra, **kw):
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=N_NEW, do_sample=False, return_dict_in_generate=True,
                              output_logits=True, **extra, **kw)


def margins(logits: tuple[torch.Tensor, ...], done: torch.Tensor | None = None) -> float:
    m = float("inf")
    for step in logits:
        top = step.float().topk(2, dim=-1).values
        m = min(m, float((top[:, 0] - top[:, 1]).min()))
    return m


def processors_case(vocab: int) -> dict[str, torch.Tensor]:
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    g = torch.Generator().manual_seed(99)
    ids = torch.randint(0, vocab, (2, 7), generator=g)
    scores = 3 * torch.randn(2, vocab, generator=g)
    out = {"proc.input_ids": ids, "proc.scores": scores}
    procs = {"rep": RepetitionPenaltyLogitsProcessor(1.3), "temp": TemperatureLogitsWarper(0.7), "topk": TopKLogitsWarper(5), "topp": TopPLogitsWarper(0.8)}
    for k, p in procs.items():
        out[f"proc.{k}"] = p(ids, scores.clone())
    x = scores.clone()
    for k in ["rep", "temp", "topk", "topp"]:
        x = procs[k](ids, x)
    out["proc.chain"] = x
    return out


def generate_case(case: str, out_root: str) -> int:
    tok_family, _ = CASES[case]
    tsrc = os.path.join(TOK_DIR, tok_family)
    tok = AutoTokenizer.from_pretrained(tsrc)
    model, cfg = build_model(case, tok)
    rows, texts = prompts(case, tok)
    pad = cfg.pad_token_id if case != "internvl" else cfg.text_config.pad_token_id
    extra = {}
    if case == "internvl":
        extra["pixel_values"] = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    ids, mask = left_pad(rows, pad)
    # choose an eos the first row produces mid-way (not before), so stopping is exercised
    probe = run_generate(model, ids, mask, extra, eos_token_id=None, pad_token_id=pad)
    new0 = probe.sequences[0, ids.shape[1]:].tolist()
    eos = next((t for i, t in enumerate(new0) if i >= 3 and t not in new0[:i] and t != pad), None)
    assert eos is not None, f"{case}: no eos candidate in {new0}"
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.do_sample = False
    g = run_generate(model, ids, mask, extra, eos_token_id=eos, pad_token_id=pad)
    min_margin = margins(g.logits)
    assert min_margin > MIN_MARGIN, f"{case}: greedy top-2 margin {min_margin} too small"
    tensors: dict[str, torch.Tensor] = {
        "input_ids": ids, "attention_mask": mask, "prompt_lengths": torch.tensor([len(r) for r in rows], dtype=I64),
        "greedy.sequences": g.sequences, "greedy.logits": torch.stack(g.logits).to(F32),
    }
    for b, r in enumerate(rows):
        e = dict(extra)
        if case == "internvl":
            tiles = [2, 1]
            start = sum(tiles[:b])
            e["pixel_values"] = extra["pixel_values"][start:start + tiles[b]]
        s = run_generate(model, torch.tensor([r]), torch.ones(1, len(r), dtype=I64), e, eos_token_id=eos, pad_token_id=pad)
        tensors[f"solo.{b}.sequences"] = s.sequences
        min_margin = min(min_margin, margins(s.logits))
    rep = run_generate(model, ids, mask, extra, eos_token_id=eos, pad_token_id=pad, repetition_penalty=1.3)
    tensors["rep.sequences"] = rep.sequences
    min_margin = min(min_margin, margins(rep.logits))
    assert min_margin > MIN_MARGIN, f"{case}: top-2 margin {min_margin} too small"
    if case == "internvl":
        tensors["pixel_values"] = extra["pixel_values"].to(F32)
    if case == "qwen2":
        tensors.update(processors_case(len(tok)))

    out = os.path.join(out_root, case)
    tmp = tempfile.mkdtemp()
    try:
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        sd = model.state_dict()
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        sd = {k: v.to(F32).contiguous() for k, v in sd.items() if not (tied and k.endswith("lm_head.weight"))}
        save_safetensors(sd, os.path.join(tmp, "model.safetensors"), {"format": "pt"})
        for f in os.listdir(tsrc):
            if f != "cases.json":
                shutil.copyfile(os.path.join(tsrc, f), os.path.join(tmp, f))
        meta = {"generator": "scripts/py/gen_vlm_generate_fixtures.py", "case": case, "transformers": transformers.__version__,
                "texts": json.dumps(texts), "prompts": json.dumps(PROMPTS[: len(rows)]), "system": SYSTEM, "max_new_tokens": str(N_NEW),
                "eos": str(eos), "pad": str(pad), "min_margin": f"{min_margin:.4g}", "tiles": "2,1" if case == "internvl" else ""}
        save_safetensors({k: v.contiguous() for k, v in tensors.items()}, os.path.join(tmp, "generate.safetensors"), meta)
        if os.path.exists(out):
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{case}: eos {eos}, min top-2 margin {min_margin:.3g}, {size} B -> {os.path.relpath(out, REPO_ROOT)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    bad = [c for c in args.cases if c not in CASES]
    if bad:
        ap.error(f"unknown case(s): {' '.join(bad)}")
    torch.set_grad_enabled(False)
    transformers.logging.set_verbosity_error()
    os.makedirs(args.out, exist_ok=True)
    for c in args.cases or CASES:
        if generate_case(c, args.out):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
