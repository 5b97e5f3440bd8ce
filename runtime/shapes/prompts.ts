// How the shapes VLM is spoken to: its special tokens, its ChatML chat template (InternVL3-hf
// style: an image item renders as one `<IMG_CONTEXT>` placeholder that the processor expands to
// `<img>` + `<IMG_CONTEXT>` x tokens-per-tile x tiles + `</img>`), the VERIFI rewriting system prompt
// it is trained with, and the tokenizer trained on the world's language.
import { Template } from '@huggingface/jinja';
import { Rng } from '../../src/ir/init.ts';
import { trainBpe, tokenizerJson, type SpecialToken } from './bpe.ts';
import { caption, paraphrase } from './captions.ts';
import { instruction, randomEdit } from './edits.ts';
import { NAMED_SCENES, randomScene } from './scenes.ts';

export const SPECIAL_TOKENS: readonly SpecialToken[] = [
  { content: '<|endoftext|>', special: true },
  { content: '<|im_start|>', special: true },
  { content: '<|im_end|>', special: true },
  { content: '<img>', special: true },
  { content: '</img>', special: true },
  { content: '<IMG_CONTEXT>', special: true },
];
export const PAD = '<|endoftext|>';
export const EOS = '<|im_end|>';
export const IMG_START = '<img>';
export const IMG_END = '</img>';
export const IMG_CONTEXT = '<IMG_CONTEXT>';

/**
 * The VERIFI system prompt the shapes VLM is trained with: with it, any request (a short or
 * paraphrased prompt, a named scene, an image plus an edit instruction, an image alone) is
 * answered with the canonical caption of the image to draw.
 */
export const REWRITE_SYSTEM_PROMPT = 'rewrite the request as the caption of the image to draw.';
/** The captioning question (no system prompt). */
export const CAPTION_QUESTION = 'describe the image.';

/** ChatML with InternVL3-hf's image placeholder; no default system message. */
export const CHAT_TEMPLATE =
  "{%- for message in messages -%}" +
  "{{- '<|im_start|>' + message['role'] + '\\n' -}}" +
  "{%- if message['content'] is string -%}{{- message['content'] -}}" +
  "{%- else -%}{%- for item in message['content'] -%}" +
  "{%- if item['type'] == 'image' -%}{{- '<IMG_CONTEXT>\\n' -}}" +
  "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}" +
  "{%- endfor -%}{%- endif -%}" +
  "{{- '<|im_end|>\\n' -}}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

export type ContentItem = { type: 'image' } | { type: 'text'; text: string };
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentItem[];
}

const template = new Template(CHAT_TEMPLATE);

/** The chat template applied (image placeholders not yet expanded). */
export function applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  return template.render({ messages, add_generation_prompt: addGenerationPrompt });
}

/** InternVL's processor step: each `<IMG_CONTEXT>` placeholder -> `<img>` + `<IMG_CONTEXT>` x n + `</img>`. */
export function expandImages(text: string, tokensPerImage: number): string {
  return text.split(IMG_CONTEXT).join(IMG_START + IMG_CONTEXT.repeat(tokensPerImage) + IMG_END);
}

/** The user turn of a request: images first (InternVL's order), then the text if any. */
export function userContent(text: string | undefined, images: number): ContentItem[] {
  return [...Array.from({ length: images }, () => ({ type: 'image' as const })), ...(text ? [{ type: 'text' as const, text }] : [])];
}

/** Every kind of text the VLM meets, drawn with a fixed seed: the tokenizer's training corpus. */
export function tokenizerCorpus(n = 3000): string[] {
  const rng = new Rng(2026, 'shapes-tokenizer-corpus');
  const out: string[] = [REWRITE_SYSTEM_PROMPT, CAPTION_QUESTION, ...Object.keys(NAMED_SCENES), ...Object.values(NAMED_SCENES).map(caption)];
  for (const role of ['system', 'user', 'assistant']) out.push(applyChatTemplate([{ role: role as ChatMessage['role'], content: 'x' }], true));
  for (let i = 0; i < n; i++) {
    const s = randomScene(rng);
    out.push(caption(s), paraphrase(s, rng));
    const e = randomEdit(s, rng);
    if (e) out.push(instruction(e.edit));
  }
  return out;
}

/** tokenizer.json of the shapes VLM: byte-level BPE trained on tokenizerCorpus(), Qwen2 layout. */
export function buildTokenizerJson(): object {
  return tokenizerJson(trainBpe(tokenizerCorpus()), SPECIAL_TOKENS);
}

/** tokenizer_config.json: Qwen2 class, ChatML template, eos/pad, InternVL's named image tokens. */
export function buildTokenizerConfig(tokenizer: { added_tokens: { id: number; content: string; special: boolean }[] }, maxLength: number): object {
  return {
    tokenizer_class: 'Qwen2Tokenizer',
    added_tokens_decoder: Object.fromEntries(tokenizer.added_tokens.map((t) => [String(t.id), { content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: t.special }])),
    bos_token: null,
    eos_token: EOS,
    pad_token: PAD,
    unk_token: null,
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    errors: 'replace',
    model_max_length: maxLength,
    split_special_tokens: false,
    extra_special_tokens: { start_image_token: IMG_START, end_image_token: IMG_END, context_image_token: IMG_CONTEXT },
  };
}
