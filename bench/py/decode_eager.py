"""Peer for bench/decode.ts: greedy generation with transformers' Qwen2ForCausalLM.generate in
PyTorch eager fp32 (attn_implementation "eager", DynamicCache), the same weights and prompts as
the TS side.

  --make DIR    build the benchmark model (a seeded random Qwen2: N(0, 1/fan_in) linears,
                N(0, 1) embeddings, 1 + 0.3 N(0, 1) norm scales, so greedy logits are well
                separated), save it as a Hugging Face folder (config.json, model.safetensors) and
                the prompts (prompts.json, seeded token ids), print one JSON line, exit
  --serve DIR   load DIR, then answer stdin requests, one JSON line each:
                  gen B         -> {"tokens": [[...] x B]}   greedy tokens of the first B prompts
                  run B K       -> {"prefill_ms": [...], "decode_ms": [...]}  K timed generations
                                   of batch B: prefill = one forward of the prompts with a fresh
                                   cache (as generate's first step), decode = generate(max_new_tokens
                                   = N) minus that prefill, in the same call sequence
                  mem           -> {"vmhwm_kb": ...}
                  quit / EOF    -> exit
"""
import argparse
import json
import os
import sys
import time

import torch

import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM


def make(out, layers, hidden, heads, kv_heads, inter, vocab, prompt_len, batch, seed):
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      tie_word_embeddings=False, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                v = 1 + 0.3 * torch.randn(p.shape, generator=g)
            elif name.endswith("embed_tokens.weight"):
                v = torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.3 * torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5
            p.copy_(v)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    prompts = torch.randint(1, vocab, (batch, prompt_len), generator=g).tolist()
    with open(os.path.join(out, "prompts.json"), "w") as f:
        json.dump(prompts, f)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"dir": out, "params": params, "torch": torch.__version__, "transformers": transformers.__version__}))


def serve(d, threads, new_tokens):
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    model = Qwen2ForCausalLM.from_pretrained(d, attn_implementation="eager", torch_dtype=torch.float32).eval()
    prompts = json.load(open(os.path.join(d, "prompts.json")))
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)

    def batch(b):
        ids = torch.tensor(prompts[:b])
        return ids, torch.ones_like(ids)

    def prefill(ids, mask):
        cache = transformers.DynamicCache()
        model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)

    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        if parts[0] == "gen":
            ids, mask = batch(int(parts[1]))
            out = model.generate(input_ids=ids, attention_mask=mask, **kw)
            print(json.dumps({"tokens": out[:, ids.shape[1]:].tolist()}), flush=True)
        elif parts[0] == "run":
            b, k = int(parts[1]), int(parts[2])
            ids, mask = batch(b)
            pre, dec = [], []
            for _ in range(k):
                t0 = time.perf_counter()
                prefill(ids, mask)
                t1 = time.perf_counter()
                model.generate(input_ids=ids, attention_mask=mask, **kw)
                t2 = time.perf_counter()
                pre.append((t1 - t0) * 1e3)
                dec.append(max(0.0, (t2 - t1) - (t1 - t0)) * 1e3)
            print(json.dumps({"prefill_ms": pre, "decode_ms": dec}), flush=True)
        elif parts[0] == "mem":
            kb = 0
            for l in open("/proc/self/status"):
                if l.startswith("VmHWM:"):
                    kb = int(l.split()[1])
            print(json.dumps({"vmhwm_kb": kb}), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--make")
    ap.add_argument("--serve")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.make:
        make(a.make, a.layers, a.hidden, a.heads, a.kv_heads, a.intermediate, a.vocab, a.prompt, a.batch, a.seed)
    elif a.serve:
        serve(a.serve, a.threads, a.new)
    else:
        ap.error("--make DIR or --serve DIR")
