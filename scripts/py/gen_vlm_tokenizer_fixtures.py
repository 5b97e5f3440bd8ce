#!/usr/bin/env python3
"""Generate tokenizer + chat-template parity fixtures (test/fixtures/vlm-tok/), used by
test/vlm-tokenizer.test.ts.

Usage (from the repo root, inside the venv made by `scripts/py/setup-venv.sh --hf`):
    python scripts/py/gen_vlm_tokenizer_fixtures.py [--out DIR] [family ...]

For each family a small tokenizer is trained with Python `tokenizers` on a fixed corpus in that
family's pre-tokenizer style, and saved with a chat template written in the family's format:

  qwen2      ByteLevel BPE, NFC, Qwen2's split regex (single digits); ChatML with the default
             system prompt (template in tokenizer_config.json, as on the Hub)
  qwen2_5_vl the same tokenizer; Qwen2-VL's ChatML with <|vision_start|><|image_pad|><|vision_end|>
             per image, a namespace image counter and add_vision_id
  qwen3      the same tokenizer; Qwen3's ChatML with <think> blocks and enable_thinking
  llama3     ByteLevel BPE with Llama-3's regex (digits in threes), ignore_merges, a
             TemplateProcessing post-processor adding <|begin_of_text|>; Llama-3.1's header
             template (bos, date_string, system message, trim)
  gemma3     SentencePiece-style BPE: ' ' -> '▁' normalizer, no pre-tokenizer, byte fallback
             (<0x00>..<0xFF>), <bos> post-processor; Gemma-3's turn template (system folded into
             the first user turn, role alternation check, <start_of_image>, trim)
  internvl   the Qwen2 tokenizer plus <img>, </img>, <IMG_CONTEXT>; InternVL3-hf's ChatML that
             renders each image as <IMG_CONTEXT>, which InternVLProcessor then replaces by
             <img> + <IMG_CONTEXT> * (tokens per tile * tiles) + </img> (chat_template.jinja, as
             transformers 5 saves it)
  wordlevel  a WordLevel model (Whitespace pre-tokenizer, lowercase, <unk>), the kind the demo's
             TS-built tokenizer is; a plain ChatML template over string contents

The templates are written for these fixtures in each family's format (not copies of the Hub
files); they exercise what the real ones use: namespace(), loop.first/index0, slicing,
`is string` / `is defined`, `in` on dicts, string methods (split, lstrip, rstrip), filters (trim),
raise_exception.

Per family folder: tokenizer.json, tokenizer_config.json (+ chat_template.jinja), cases.json:
  encode: [{text, ids, ids_special (add_special_tokens=True), decoded, decoded_skip}]
  chats:  [{messages, add_generation_prompt, vars, image_tokens (InternVL: tokens per image),
           text (apply_chat_template(tokenize=False), images expanded), ids}]
  errors: [{messages, error}]: conversations the template rejects (raise_exception)
The script checks that transformers' AutoTokenizer and the bare `tokenizers` file agree on
every string, so the fixtures pin both.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "test", "fixtures", "vlm-tok")

QWEN_PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


# ------------------------------------------------------------------------------ corpus

WORDS = (
    "a red circle on a blue square the green triangle sits above small large tiny huge image photo "
    "of with and in under left right top bottom corner centre center bright dark shiny matte wooden "
    "metal glass cat dog bird tree house car street night day sunset morning rain snow light shadow "
    "describe write detailed prompt picture scene background foreground style painting drawing render "
    "realistic cinematic portrait landscape close-up wide-angle don't it's we're they'll I'm you've"
).split()
EXTRA = [
    "Café au lait, naïve façade, Ünïcödé — déjà vu.",
    "日本語のテキストと中文字符 and 한국어 문장.",
    "Emoji: 🙂 👍🏽 🎨🖼️ 👨‍👩‍👧 ✨",
    "Numbers 0 1 12 123 1234 12345 3.14159 2024-07-26 100%",
    "Code: def f(x):\n    return x ** 2\n\tindent\ttab",
    "Whitespace   runs    and\n\n\nnewlines \r\n windows",
    "Quotes \"double\" 'single' (parens) [brackets] {braces} <angle>",
    "A photo of a cat. A painting of a dog! Is it a bird? Yes: it is.",
]


def corpus() -> list[str]:
    rng = random.Random(1234)
    lines = []
    for _ in range(600):
        n = rng.randint(3, 14)
        s = " ".join(rng.choice(WORDS) for _ in range(n))
        if rng.random() < 0.3:
            s = s.capitalize() + rng.choice([".", "!", "?", ",", ":"])
        if rng.random() < 0.1:
            s = "  " + s + "\n"
        lines.append(s)
    return lines + EXTRA * 20


# ------------------------------------------------------------------------------ templates

QWEN2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN3_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- set ns = namespace(last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n"
    "    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    "    {%- if message.role == 'user' and ns.last_query_index == messages|length - 1 %}\n"
    "        {%- set ns.last_query_index = index %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.content is string %}{%- set content = message.content %}{%- else %}{%- set content = '' %}{%- endif %}\n"
    "    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == 'assistant' %}\n"
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if '</think>' in content %}\n"
    "            {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
    "            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}\n"
    "        {%- endif %}\n"
    "        {%- if loop.index0 > ns.last_query_index and reasoning_content %}\n"
    "            {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
    "        {%- else %}\n"
    "            {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}"
)

LLAMA3_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- set date_string = \"26 Jul 2024\" %}\n"
    "{%- endif %}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)

GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)

INTERNVL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are InternVL, a multimodal assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

WORDLEVEL_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# ------------------------------------------------------------------------------ tokenizers


def train_bpe(tok: Tokenizer, vocab: int, specials: list[str], alphabet: list[str]) -> Tokenizer:
    tr = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=alphabet, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus(), trainer=tr)
    return tok


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]


def qwen_tokenizer(extra: list[str] = ()) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    train_bpe(tok, 600, QWEN_SPECIALS + list(extra), pre_tokenizers.ByteLevel.alphabet())
    # Qwen's <think> markers are plain (non-special) added tokens
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False), AddedToken("</think>", special=False, normalized=False)])
    return tok


def llama3_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    train_bpe(tok, 600, specials, pre_tokenizers.ByteLevel.alphabet())
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    return tok


def gemma3_tokenizer() -> Tokenizer:
    """SentencePiece-converted BPE as Gemma's: byte-fallback tokens <0x00>..<0xFF> right after the specials."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<mask>"]
    base = Tokenizer(models.BPE())
    base.normalizer = normalizers.Replace(" ", "▁")
    train_bpe(base, 700, [], [])
    trained = json.loads(base.to_str())
    vocab: dict[str, int] = {}
    for s in specials:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in sorted(trained["model"]["vocab"].items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", vocab["<bos>"])])
    return tok


def wordlevel_tokenizer() -> Tokenizer:
    specials = ["<|pad|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tr = trainers.WordLevelTrainer(vocab_size=300, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus(), trainer=tr)
    return tok


FAMILIES = {
    # name: (tokenizer, tokenizer_config keys, template, template location, tokenizer_class)
    "qwen2": (lambda: qwen_tokenizer(), {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}, QWEN2_TEMPLATE, "config", "Qwen2Tokenizer"),
    "qwen2_5_vl": (lambda: qwen_tokenizer(), {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}, QWEN2_VL_TEMPLATE, "config", "Qwen2Tokenizer"),
    "qwen3": (lambda: qwen_tokenizer(), {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}, QWEN3_TEMPLATE, "jinja", "Qwen2Tokenizer"),
    "llama3": (llama3_tokenizer, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, LLAMA3_TEMPLATE, "config", "PreTrainedTokenizerFast"),
    "gemma3": (gemma3_tokenizer, {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}, GEMMA3_TEMPLATE, "config", "GemmaTokenizer"),
    "internvl": (lambda: qwen_tokenizer(["<img>", "</img>", "<IMG_CONTEXT>"]), {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None,
                 "extra_special_tokens": {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}}, INTERNVL_TEMPLATE, "jinja", "Qwen2Tokenizer"),
    "wordlevel": (wordlevel_tokenizer, {"eos_token": "<|im_end|>", "pad_token": "<|pad|>", "unk_token": "<unk>", "bos_token": None}, WORDLEVEL_TEMPLATE, "config", "PreTrainedTokenizerFast"),
}

ENCODE_TABLE = [
    "Hello world",
    "A red circle on a blue square.",
    "  leading spaces and trailing  ",
    "tabs\tand\nnewlines\n\n\nend",
    "Whitespace     runs      here",
    "Café naïve façade Ünïcödé déjà vu",
    "e\u0301 (combining) vs é (precomposed)",
    "日本語のテキスト 中文字符 한국어",
    "Emoji 🙂👍🏽 🎨 👨‍👩‍👧 ✨!",
    "Numbers 7 42 365 2024 1234567 3.14159",
    "don't it's we're they'll I'm you've",
    "<|im_start|>user\nhi there<|im_end|>",
    "text<|endoftext|>more text",
    "unknownwordxyz qqq zzzz",
    "\n",
    " ",
    "a",
    "",
    "Windows\r\nline\rends",
    "Mixed: ASCII, Ελληνικά, кириллица, العربية, עברית.",
]


def chat_table(family: str) -> tuple[list[dict], list[dict]]:
    sys_user = [{"role": "system", "content": "You rewrite prompts into detailed image descriptions."}, {"role": "user", "content": "a cat on a red square"}]
    user = [{"role": "user", "content": "Describe the scene:  a dog under a tree at sunset  "}]
    multi = [
        {"role": "user", "content": "a bird"},
        {"role": "assistant", "content": "A small bird sits on a wooden branch."},
        {"role": "user", "content": "make it night"},
    ]
    empty = [{"role": "user", "content": ""}]
    chats = [
        {"messages": sys_user, "add_generation_prompt": True},
        {"messages": sys_user, "add_generation_prompt": False},
        {"messages": user, "add_generation_prompt": True},
        {"messages": multi, "add_generation_prompt": True},
        {"messages": empty, "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": "Emoji 🎨 and 日本語\n\ttabs"}], "add_generation_prompt": True},
    ]
    errors: list[dict] = []
    if family in ("qwen2_5_vl", "gemma3", "internvl"):
        one = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Make the circle blue."}]}]
        two = [{"role": "system", "content": "Edit images."} if family != "gemma3" else {"role": "system", "content": [{"type": "text", "text": "Edit images."}]},
               {"role": "user", "content": [{"type": "text", "text": "Combine"}, {"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"}]}]
        chats.append({"messages": one, "add_generation_prompt": True, "image_tokens": [2 * 16]})
        chats.append({"messages": two, "add_generation_prompt": True, "image_tokens": [16, 5 * 16]})
    if family == "qwen2_5_vl":
        chats.append({"messages": chats[-1]["messages"], "add_generation_prompt": True, "vars": {"add_vision_id": True}, "image_tokens": [16, 16]})
    if family == "qwen3":
        chats.append({"messages": user, "add_generation_prompt": True, "vars": {"enable_thinking": False}})
        chats.append({"messages": multi[:1] + [{"role": "assistant", "content": "<think>\nbirds fly\n</think>\n\nA bird in flight."}] + multi[2:], "add_generation_prompt": True})
    if family == "llama3":
        chats.append({"messages": sys_user, "add_generation_prompt": True, "vars": {"date_string": "01 Jan 2025"}})
    if family == "gemma3":
        errors.append({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "error": "Conversation roles must alternate user/assistant/user/assistant/..."})
    return chats, errors


def expand_images(family: str, text: str, image_tokens: list[int] | None) -> str:
    """What the family's processor does to the rendered template before tokenizing (InternVLProcessor.replace_image_token)."""
    if family != "internvl" or not image_tokens:
        return text
    parts = text.split("<IMG_CONTEXT>")
    assert len(parts) == len(image_tokens) + 1, (len(parts), image_tokens)
    out = parts[0]
    for n, rest in zip(image_tokens, parts[1:]):
        out += "<img>" + "<IMG_CONTEXT>" * n + "</img>" + rest
    return out


def generate(family: str, out_root: str) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    make, special, template, where, cls = FAMILIES[family]
    tok = make()
    out = os.path.join(out_root, family)
    tmp = tempfile.mkdtemp()
    try:
        extra = dict(special)
        est = extra.pop("extra_special_tokens", None)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, **{k: v for k, v in extra.items() if v is not None}, model_max_length=32768, clean_up_tokenization_spaces=False)
        fast.save_pretrained(tmp)
        cfg = json.load(open(os.path.join(tmp, "tokenizer_config.json")))
        for k, v in extra.items():
            cfg[k] = v
        if est:
            cfg["extra_special_tokens"] = est
        cfg["tokenizer_class"] = cls
        cfg.pop("backend", None)
        jinja = os.path.join(tmp, "chat_template.jinja")
        if os.path.exists(jinja):
            os.remove(jinja)
        if where == "config":
            cfg["chat_template"] = template
        else:
            with open(jinja, "w") as f:
                f.write(template)
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f, indent=2, ensure_ascii=False, sort_keys=True)
            f.write("\n")
        # tokenizer.json as `tokenizers` writes it, made deterministic (sorted keys are not possible: order matters)
        with open(os.path.join(tmp, "tokenizer.json"), "w") as f:
            f.write(tok.to_str(pretty=True))
            f.write("\n")

        hf = AutoTokenizer.from_pretrained(tmp)
        raw = Tokenizer.from_file(os.path.join(tmp, "tokenizer.json"))
        encode = []
        for text in ENCODE_TABLE:
            ids = hf(text, add_special_tokens=False)["input_ids"]
            ids_sp = hf(text, add_special_tokens=True)["input_ids"]
            assert ids == raw.encode(text, add_special_tokens=False).ids, (family, text)
            assert ids_sp == raw.encode(text, add_special_tokens=True).ids, (family, text)
            encode.append({
                "text": text, "ids": ids, "ids_special": ids_sp,
                "decoded": hf.decode(ids_sp, skip_special_tokens=False) if ids_sp else "",
                "decoded_skip": hf.decode(ids_sp, skip_special_tokens=True) if ids_sp else "",
            })
        chats_in, errors_in = chat_table(family)
        chats = []
        for c in chats_in:
            vars_ = c.get("vars", {})
            text = hf.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=c["add_generation_prompt"], **vars_)
            text = expand_images(family, text, c.get("image_tokens"))
            ids = hf(text, add_special_tokens=False)["input_ids"]
            chats.append({**c, "text": text, "ids": ids})
        errors = []
        for e in errors_in:
            try:
                hf.apply_chat_template(e["messages"], tokenize=False, add_generation_prompt=True)
            except Exception as ex:  # jinja2 TemplateError from raise_exception
                assert e["error"] in str(ex), (family, str(ex))
                errors.append(e)
                continue
            raise AssertionError(f"{family}: template accepted {e['messages']}")
        with open(os.path.join(tmp, "cases.json"), "w") as f:
            json.dump({"family": family, "vocab_size": len(hf), "encode": encode, "chats": chats, "errors": errors}, f, indent=1, ensure_ascii=False)
            f.write("\n")
        if os.path.exists(out):
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
        print(f"{family}: vocab {len(hf)}, {len(encode)} strings, {len(chats)} chats -> {os.path.relpath(out, REPO_ROOT)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("families", nargs="*")
    args = ap.parse_args()
    bad = [f for f in args.families if f not in FAMILIES]
    if bad:
        ap.error(f"unknown famil(ies): {' '.join(bad)} (have {' '.join(FAMILIES)})")
    os.makedirs(args.out, exist_ok=True)
    for fam in args.families or FAMILIES:
        generate(fam, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
