// Prompts as token ids: the chat template rendered over (system prompt, user text, images), the
// family's image placeholders expanded to the model's image tokens, tokenised, and the tokens of
// the user's own text located (the `--no-rewrite` condition keeps those and drops the template's
// fixed prefix and suffix, as Qwen-Image drops its 34 template tokens).
import type { ChatMessage, ContentPart } from './chat.ts';
import { ChatTemplateError } from './chat.ts';
import { TokenizerError, type VlmTokenizer } from './tokenizer.ts';

/**
 * How a family's processor turns the placeholder its chat template writes for an image into the
 * model's image tokens. InternVL (InternVLProcessor.replace_image_token): the template writes
 * <IMG_CONTEXT>, replaced by <img> + <IMG_CONTEXT> x (tokens per tile x tiles) + </img>.
 */
export interface ImageTokenSpec {
  /** what the template writes per image */
  placeholder: string;
  /** the expansion for an image of n feature tokens */
  expand(n: number): string;
  /** the feature token's id (its positions receive the image features) */
  imageTokenId: number;
}

/** InternVL's spec from the tokenizer (start / end / context image tokens) and config.json's image_token_id. */
export function internvlImageTokens(tok: VlmTokenizer, imageTokenId: number): ImageTokenSpec {
  const ctx = tok.special.extra.context_image_token ?? tok.idToToken(imageTokenId);
  if (ctx === undefined) throw new TokenizerError(`image_token_id ${imageTokenId} is not in the tokenizer's vocabulary`);
  if (tok.tokenToId(ctx) !== imageTokenId) throw new TokenizerError(`the tokenizer's image context token '${ctx}' has id ${tok.tokenToId(ctx)}, config.json says image_token_id ${imageTokenId}`);
  const start = tok.special.extra.start_image_token ?? '<img>';
  const end = tok.special.extra.end_image_token ?? '</img>';
  for (const t of [start, end]) tok.requireId(t, 'InternVL image delimiter');
  return { placeholder: ctx, expand: (n) => start + ctx.repeat(n) + end, imageTokenId };
}

export interface PromptRequest {
  /** the user's text */
  user: string;
  /** system prompt (omitted: the template's own default, if it has one) */
  system?: string;
  /** feature tokens per image, in order (InternVL: tiles x tokens per tile) */
  images?: readonly number[];
  addGenerationPrompt?: boolean;
  vars?: Record<string, unknown>;
}

export interface Prompt {
  /** the rendered template, images expanded */
  text: string;
  ids: number[];
  /** [start, end) of the tokens that come from the user's text (empty for an empty prompt) */
  userSpan: [number, number];
  /** positions of image feature tokens, in order */
  imagePositions: number[];
}

function countOf(text: string, needle: string): number {
  let n = 0;
  for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + needle.length)) n++;
  return n;
}

function expandAll(text: string, spec: ImageTokenSpec | undefined, images: readonly number[]): string {
  if (!images.length || !spec) return text;
  const parts = text.split(spec.placeholder);
  let out = parts[0]!;
  for (let i = 1; i < parts.length; i++) out += spec.expand(images[i - 1]!) + parts[i]!;
  return out;
}

/** Render, expand and tokenise one prompt. */
export function buildPrompt(tok: VlmTokenizer, req: PromptRequest, spec?: ImageTokenSpec): Prompt {
  const chat = tok.chat;
  if (!chat) throw new ChatTemplateError(`${tok.source}: the tokenizer has no chat template (tokenizer_config.json chat_template or chat_template.jinja)`);
  const images = req.images ?? [];
  if (images.length && !spec) throw new ChatTemplateError('this model has no vision tower: images cannot be passed to it');
  if (spec && tok.chat && req.user.includes(spec.placeholder)) throw new ChatTemplateError(`the prompt contains the image placeholder '${spec.placeholder}'; pass images as images`);
  const messages = (user: string | ContentPart[]): ChatMessage[] => [...(req.system !== undefined ? [{ role: 'system', content: req.system }] : []), { role: 'user', content: user }];
  const opts = { addGenerationPrompt: req.addGenerationPrompt ?? true, vars: req.vars, specials: tok.templateSpecials() };
  let rendered: string;
  if (images.length) {
    rendered = chat.render(messages([...images.map((): ContentPart => ({ type: 'image' })), { type: 'text', text: req.user }]), opts);
    const got = countOf(rendered, spec!.placeholder);
    if (got === 0) {
      // a template that only knows string contents: the InternVL-chat convention, placeholders first
      rendered = chat.render(messages(images.map(() => spec!.placeholder + '\n').join('') + req.user), opts);
    } else if (got !== images.length) throw new ChatTemplateError(`${chat.origin}: the template wrote ${got} image placeholders ('${spec!.placeholder}') for ${images.length} images`);
  } else rendered = chat.render(messages(req.user), opts);

  const text = expandAll(rendered, spec, images);
  const ids = tok.encode(text);
  const imagePositions: number[] = [];
  if (spec) ids.forEach((id, i) => id === spec.imageTokenId && imagePositions.push(i));
  const wantImageTokens = images.reduce((a, b) => a + b, 0);
  if (spec && imagePositions.length !== wantImageTokens) throw new TokenizerError(`the prompt tokenises to ${imagePositions.length} image tokens, the images need ${wantImageTokens} (is the user text splitting an image token?)`);

  // The user's tokens: those not shared with the tokenisation of the text before / after it.
  const needle = req.user.trim();
  let userSpan: [number, number] = [ids.length, ids.length];
  const at = needle ? rendered.lastIndexOf(needle) : -1;
  if (at >= 0) {
    const before = tok.encode(expandAll(rendered.slice(0, at), spec, images));
    const after = tok.encode(expandAll(rendered.slice(at + needle.length), spec, images.slice(countOf(rendered.slice(0, at), spec?.placeholder ?? '\u0000'))));
    let k = 0;
    while (k < before.length && k < ids.length && before[k] === ids[k]) k++;
    let m = 0;
    while (m < after.length && m < ids.length - k && after[after.length - 1 - m] === ids[ids.length - 1 - m]) m++;
    userSpan = [k, ids.length - m];
  } else if (needle) throw new ChatTemplateError(`${chat.origin}: the rendered template does not contain the user's text (does the template rewrite it?)`);
  return { text, ids, userSpan, imagePositions };
}
