"""Proves the shapes demo's VLM folder is a genuine Hugging Face checkpoint.

1. transformers' InternVLForConditionalGeneration.from_pretrained loads it with no missing or
   unexpected tensors, and its logits on a padded batch (text rows and image rows) equal the
   logits of our compiled ONNX graph of the same folder (written by
   examples/shapes/dev/vlm-parity-dump.ts).
2. Python `tokenizers` (and transformers' AutoTokenizer) give the same ids as
   @huggingface/tokenizers on a table of strings (unicode, emoji, whitespace runs, special
   tokens, chat-templated rows); the chat template renders identically through
   apply_chat_template.

usage: python scripts/py/check_shapes_vlm.py out/shapes-vlm out/shapes-vlm-parity
"""
import json
import sys

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoTokenizer, InternVLForConditionalGeneration

folder, dump = sys.argv[1], sys.argv[2]

model, info = InternVLForConditionalGeneration.from_pretrained(folder, output_loading_info=True, torch_dtype=torch.float32)
model.eval()
bad = {k: v for k, v in info.items() if v}
assert not bad, f"loading info not clean: {bad}"

d = load_file(f"{dump}/logits.safetensors")
with torch.no_grad():
    out = model(input_ids=d["input_ids"], attention_mask=d["attention_mask"], pixel_values=d["pixel_values"])
ours, theirs = d["logits"], out.logits
mask = d["attention_mask"].bool()
err = (ours - theirs)[mask].abs().max().item()
scale = theirs[mask].abs().max().item()
print(f"logits: max |ours - transformers| = {err:.3e} (max |logit| {scale:.2f}, relative {err / scale:.2e}) over {int(mask.sum())} tokens")
assert err / scale < 1e-4, "logits differ"

tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
auto = AutoTokenizer.from_pretrained(folder)
table = json.load(open(f"{dump}/tokenizer-table.json"))
for row in table:
    ids = tok.encode(row["text"], add_special_tokens=False).ids
    assert ids == row["ids"], f"ids differ on {row['text']!r}:\n  python {ids}\n  js     {row['ids']}"
    assert auto(row["text"], add_special_tokens=False)["input_ids"] == row["ids"], f"AutoTokenizer differs on {row['text']!r}"
    assert tok.decode(ids, skip_special_tokens=False) == row["decoded"], f"decode differs on {row['text']!r}"
print(f"tokenizer: {len(table)} strings, ids identical (tokenizers and AutoTokenizer), decodes identical")

msgs = [
    {"role": "system", "content": "rewrite the request as the caption of the image to draw."},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "make the red circle blue"}]},
]
text = auto.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
want = "<|im_start|>system\nrewrite the request as the caption of the image to draw.<|im_end|>\n<|im_start|>user\n<IMG_CONTEXT>\nmake the red circle blue<|im_end|>\n<|im_start|>assistant\n"
assert text == want, f"chat template renders {text!r}"
print("chat template: apply_chat_template renders the ChatML + <IMG_CONTEXT> form")
print("OK")
