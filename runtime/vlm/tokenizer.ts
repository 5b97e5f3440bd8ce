// A model folder's tokenizer: tokenizer.json through @huggingface/tokenizers (the JS port of the
// Rust `tokenizers` pipeline that transformers.js uses: normalizers, Oniguruma-compatible split
// regexes, byte-level / byte-fallback BPE, added tokens), tokenizer_config.json for the special
// tokens and decode options, and the chat template (chat.ts).
//
// Semantics follow transformers' tokenizers: encode(text) with add_special_tokens (the
// post-processor's BOS etc.), encode of a rendered chat template WITHOUT them (apply_chat_template
// does the same: the template writes its own bos_token), decode with skip_special_tokens and
// clean_up_tokenization_spaces from the config (default off, as transformers 5).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ChatTemplate } from './chat.ts';

export class TokenizerError extends Error {
  override name = 'TokenizerError';
}

type Json = Record<string, unknown>;

/** A special token entry of tokenizer_config.json: a string or an AddedToken dict. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

function readJson(file: string, what: string): Json {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new TokenizerError(`cannot read ${what} ${file}: ${(e as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${file} is not valid JSON (${(e as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new TokenizerError(`${file} is not a JSON object`);
  return v as Json;
}

export interface SpecialTokens {
  bos?: string;
  eos?: string;
  pad?: string;
  unk?: string;
  /** tokenizer_config.json extra_special_tokens / named extras (InternVL's start/end/context image tokens) */
  extra: Record<string, string>;
}

export class VlmTokenizer {
  readonly special: SpecialTokens;
  /** ids of every special added token (skipped by decode(skipSpecialTokens)) */
  readonly specialIds: ReadonlySet<number>;
  readonly chat?: ChatTemplate;
  /** model_max_length of the config, when it is a real number */
  readonly modelMaxLength?: number;
  private readonly tok: Tokenizer;
  private readonly cleanUp: boolean;

  private constructor(tok: Tokenizer, readonly config: Json, readonly vocabSize: number, special: SpecialTokens, specialIds: Set<number>, chat: ChatTemplate | undefined, readonly source: string) {
    this.tok = tok;
    this.special = special;
    this.specialIds = specialIds;
    this.chat = chat;
    this.cleanUp = config.clean_up_tokenization_spaces === true;
    const mml = config.model_max_length;
    this.modelMaxLength = typeof mml === 'number' && Number.isSafeInteger(mml) && mml > 0 && mml < 1e12 ? mml : undefined;
  }

  /** Load tokenizer.json + tokenizer_config.json (+ chat_template.jinja) from a model folder. */
  static load(dir: string): VlmTokenizer {
    const tjPath = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(tjPath)) {
      const hint = fs.existsSync(path.join(dir, 'tokenizer.model')) || fs.existsSync(path.join(dir, 'vocab.json')) ? ' (only slow-tokenizer files are there: save the tokenizer with transformers to get tokenizer.json)' : '';
      throw new TokenizerError(`${dir} has no tokenizer.json${hint}`);
    }
    const tj = readJson(tjPath, 'tokenizer');
    const cfgPath = path.join(dir, 'tokenizer_config.json');
    const config = fs.existsSync(cfgPath) ? readJson(cfgPath, 'tokenizer config') : {};
    return VlmTokenizer.fromObjects(tj, config, { dir, source: tjPath });
  }

  /** From parsed tokenizer.json / tokenizer_config.json objects; `dir` is searched for chat_template.jinja. */
  static fromObjects(tokenizerJson: Json, config: Json, opts: { dir?: string; source?: string; chatTemplate?: string } = {}): VlmTokenizer {
    const source = opts.source ?? '<tokenizer.json>';
    const model = tokenizerJson.model as Json | undefined;
    if (!model || typeof model !== 'object') throw new TokenizerError(`${source}: no 'model' object (not a tokenizers file?)`);
    if (!Array.isArray(tokenizerJson.added_tokens)) tokenizerJson = { ...tokenizerJson, added_tokens: [] };
    tokenizerJson = { ...tokenizerJson, pre_tokenizer: unicodeWhitespace(tokenizerJson.pre_tokenizer) };
    // tokenizers.js reads a WordLevel model's unk token from the config, not from the model
    const libConfig: Json = { ...config, clean_up_tokenization_spaces: config.clean_up_tokenization_spaces === true };
    if (model.type === 'WordLevel' && typeof model.unk_token === 'string' && libConfig.unk_token === undefined) libConfig.unk_token = model.unk_token;
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(tokenizerJson, libConfig);
    } catch (e) {
      throw new TokenizerError(`${source} cannot be used: ${(e as Error).message}`);
    }
    const vocab = tok.get_vocab(true);
    let vocabSize = 0;
    for (const id of vocab.values()) vocabSize = Math.max(vocabSize, id + 1);
    const specialIds = new Set<number>();
    for (const [id, t] of tok.get_added_tokens_decoder()) if ((t as unknown as { special?: boolean }).special) specialIds.add(id);
    const extra: Record<string, string> = {};
    const est = config.extra_special_tokens;
    if (est && typeof est === 'object' && !Array.isArray(est)) for (const [k, v] of Object.entries(est as Json)) if (tokenString(v)) extra[k] = tokenString(v)!;
    for (const k of ['start_image_token', 'end_image_token', 'context_image_token', 'image_token', 'boi_token', 'eoi_token']) if (tokenString(config[k])) extra[k] = tokenString(config[k])!;
    const special: SpecialTokens = { bos: tokenString(config.bos_token), eos: tokenString(config.eos_token), pad: tokenString(config.pad_token), unk: tokenString(config.unk_token), extra };
    for (const [k, v] of Object.entries({ bos: special.bos, eos: special.eos, pad: special.pad, unk: special.unk, ...extra }))
      if (v !== undefined && tok.token_to_id(v) === undefined) throw new TokenizerError(`${source}: tokenizer_config.json names ${k} token '${v}', which is not in the vocabulary`);
    let template = opts.chatTemplate;
    let templateSource = '<chat template>';
    const jinja = opts.dir ? path.join(opts.dir, 'chat_template.jinja') : undefined;
    if (template === undefined && jinja && fs.existsSync(jinja)) (template = fs.readFileSync(jinja, 'utf8')), (templateSource = jinja);
    if (template === undefined) {
      const ct = config.chat_template;
      if (typeof ct === 'string') (template = ct), (templateSource = 'tokenizer_config.json chat_template');
      else if (Array.isArray(ct)) {
        // the list form: [{name: 'default', template}, {name: 'tool_use', ...}]
        const d = ct.find((x) => x && typeof x === 'object' && (x as Json).name === 'default') as Json | undefined;
        if (d && typeof d.template === 'string') (template = d.template), (templateSource = 'tokenizer_config.json chat_template[default]');
      }
    }
    const chat = template === undefined ? undefined : new ChatTemplate(template, templateSource);
    return new VlmTokenizer(tok, config, vocabSize, special, specialIds, chat, source);
  }

  /** Token ids of `text`; addSpecialTokens runs the post-processor (BOS for Llama / Gemma). */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    if (text === '') return opts.addSpecialTokens ? this.tok.encode('', { add_special_tokens: true }).ids : [];
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? false }).ids;
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: this.cleanUp });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** The id of a special token that must exist (errors name the token and the file). */
  requireId(token: string, what: string): number {
    const id = this.tok.token_to_id(token);
    if (id === undefined) throw new TokenizerError(`${this.source}: ${what} '${token}' is not in the vocabulary`);
    return id;
  }

  /** Variables transformers hands every chat template: the special tokens by name. */
  templateSpecials(): Record<string, string> {
    const out: Record<string, string> = {};
    const s = this.special;
    if (s.bos !== undefined) out.bos_token = s.bos;
    if (s.eos !== undefined) out.eos_token = s.eos;
    if (s.pad !== undefined) out.pad_token = s.pad;
    if (s.unk !== undefined) out.unk_token = s.unk;
    for (const [k, v] of Object.entries(s.extra)) out[k] = v;
    return out;
  }
}

/**
 * tokenizers.js runs the `Whitespace` pre-tokenizer as the JS regex /\w+|[^\w\s]+/, whose \w is
 * ASCII only ('Café' -> 'Caf', 'é'); Rust's is Unicode. The same pattern as a `Split` goes through
 * the library's Oniguruma translation (letters, marks, digits, connectors), plus the joiners
 * U+200C/U+200D that Rust's regex crate also counts as word characters (emoji ZWJ sequences);
 * matches only (invert).
 */
function unicodeWhitespace(pt: unknown): unknown {
  if (!pt || typeof pt !== 'object') return pt;
  const o = pt as Json;
  if (o.type === 'Whitespace') return { type: 'Split', pattern: { Regex: '[\\w\\x{200C}\\x{200D}]+|[^\\w\\s\\x{200C}\\x{200D}]+' }, behavior: 'Removed', invert: true };
  if (o.type === 'Sequence' && Array.isArray(o.pretokenizers)) return { ...o, pretokenizers: o.pretokenizers.map(unicodeWhitespace) };
  return pt;
}

/**
 * Streaming detokenisation: feed ids one by one, get the text they add. Holds back text while
 * the tail is an incomplete UTF-8 sequence (decoded as U+FFFD), as transformers' TextStreamer.
 */
export class StreamDecoder {
  private ids: number[] = [];
  private emitted = 0;
  constructor(private readonly tok: VlmTokenizer, private readonly opts: { skipSpecialTokens?: boolean } = { skipSpecialTokens: true }) {}
  push(id: number): string {
    this.ids.push(id);
    const text = this.tok.decode(this.ids, this.opts);
    if (text.endsWith('\uFFFD')) return '';
    const delta = text.slice(this.emitted);
    this.emitted = text.length;
    return delta;
  }
  /** whatever is still held back */
  flush(): string {
    const text = this.tok.decode(this.ids, this.opts);
    const delta = text.slice(this.emitted);
    this.emitted = text.length;
    return delta;
  }
}
