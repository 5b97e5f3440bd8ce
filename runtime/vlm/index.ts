// A VLM package (an `import-hf` output folder) at run time: tokenizer + chat template, the
// generation graph with its KV cache, InternVL's vision graph, and the VERIFI condition for
// UniFusion. This is the interface the diffusion runtime and the CLI (`rewrite`, `encode`) use.
//
//   const vlm = await VlmPackage.load('out/internvl3', { intraOpThreads: 4 });
//   vlm.taps            // hidden_states indices the package emits, e.g. [3, 6, ..., 27]
//   vlm.hidden          // hE
//   const c = await vlm.condition([{ prompt: 'a red circle', images: ['ref.png'] }, { prompt: '' }], { rewrite: true, seed: 1 });
//   c.tensors           // exactly the UniFusion graph's condition inputs:
//                       //   hidden_states.<i> f32 [B, S, hE] for i in vlm.taps, condition_mask bool [B, S]
//   c.rewritten         // the rewritten prompts ('' for an empty prompt; undefined without rewrite)
//   c.lengths           // condition tokens per row; c.promptIds / c.generatedIds / c.finish
//   await vlm.generate([{ prompt: 'describe a cat' }], { maxNewTokens: 64 })   // plain chat generation
//   await vlm.close();
//
// condition(): with `rewrite`, the chat template over (system prompt: ours, DEFAULT_SYSTEM_PROMPT,
// or `systemPrompt`; the user's prompt; its images) is generated from, and the condition is the
// taps of the generated tokens plus every image token (condition.ts). The taps are collected while
// decoding (default) or by one final pass over [prompt; generated] (`tapsFrom: 'final-pass'`; the
// two agree to float rounding, tested). Without `rewrite` the prompt is only prefilled and the
// condition is the user text's tokens (+ image tokens), the template's fixed prefix / suffix
// dropped (`keepTemplate` keeps them). The empty prompt without images is CFG's dropped
// condition: no VLM run, a row of S >= 1 zeros with an all-false mask.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { causalLMConfigFromHF, type CausalLMConfig } from '../../graphs/vlm/generation.ts';
import { tokensPerTile } from '../../graphs/vlm/internvl.ts';
import type { HostTensor } from '../../src/io/host.ts';
import { Session } from '../session.ts';
import { dynamicTiles, type RgbImage } from '../tiling.ts';
import { decodeImage } from '../images/decode.ts';
import { assembleCondition, DEFAULT_SYSTEM_PROMPT, type ConditionRow } from './condition.ts';
import { generate, type FinishReason, type RowResult } from './generate.ts';
import { buildPrompt, internvlImageTokens, type ImageTokenSpec, type Prompt } from './prompt.ts';
import { samplingSettings, type SamplingSettings } from './sampling.ts';
import { StreamDecoder, VlmTokenizer } from './tokenizer.ts';

export { DEFAULT_SYSTEM_PROMPT } from './condition.ts';
export type { DecodedImage } from '../images/decode.ts';

export class VlmError extends Error {
  override name = 'VlmError';
}

export interface LoadOptions {
  /** onnxruntime execution provider (default cpu) */
  device?: string;
  intraOpThreads?: number;
}

export interface Request {
  prompt: string;
  /** image files, or decoded 8-bit RGB images ({ width, height, data }), in prompt order (InternVL) */
  images?: (string | RgbImage)[];
  /**
   * condition() with rewrite only: teacher forcing. The VLM's answer to use instead of generating
   * one; the condition is that of a rewrite that produced exactly these tokens (taps of one pass
   * over [prompt; answer tokens], the answer tokens + image tokens selected). Training uses it to
   * get inference-time conditions for known target prompts without decoding.
   */
  answer?: string;
  /** the answer as token ids (e.g. a previous generation's generatedIds); exclusive with answer */
  answerIds?: number[];
}

export interface GenerationSettings {
  systemPrompt?: string;
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  seed?: number;
  stopStrings?: string[];
  /** streamed text per row */
  onToken?: (row: number, text: string) => void;
  /** cut the user's text to fit the context instead of refusing */
  truncate?: boolean;
  padding?: 'left' | 'right';
  /** chat template variables (enable_thinking, ...) */
  templateVars?: Record<string, unknown>;
}

export interface ConditionOptions extends GenerationSettings {
  /** a sampling seed per request (default: `seed`, one stream per row) */
  seeds?: number[];
  rewrite: boolean;
  tapsFrom?: 'decode' | 'final-pass';
  /** without rewrite: keep the template's fixed prefix / suffix tokens in the condition */
  keepTemplate?: boolean;
  /**
   * requests per VLM batch: hundreds of prompts go through in chunks of this many (each chunk
   * padded to its own longest row), merged into one result. Greedy results do not depend on it;
   * sampled ones do unless `seeds` are given (a row's default stream is its place in the chunk).
   */
  batchSize?: number;
}

export interface ConditionResult {
  tensors: Record<string, HostTensor>;
  rewritten: (string | undefined)[];
  lengths: number[];
  promptIds: number[][];
  generatedIds: number[][];
  /** 'forced': the request's answer was teacher-forced */
  finish: (FinishReason | 'empty' | 'prefill' | 'forced')[];
}

interface GenerationConfig {
  eos: number[];
  pad?: number;
  defaults: Partial<SamplingSettings>;
  maxNewTokens?: number;
}

interface PackageManifest {
  vlm?: { generation?: { onnx: string; outputs: { name: string }[] }; vision?: { onnx: string }; files?: string[]; skipped?: string };
}

const ints = (v: unknown): number[] => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]).filter((x): x is number => Number.isInteger(x));

export class VlmPackage {
  readonly taps: number[];
  readonly hidden: number;
  readonly config: CausalLMConfig;
  readonly tokenizer: VlmTokenizer;
  private constructor(
    readonly dir: string,
    config: CausalLMConfig,
    tokenizer: VlmTokenizer,
    private readonly session: Session,
    private readonly vision: Session | undefined,
    taps: number[],
    private readonly gen: GenerationConfig,
    private readonly images: ImageTokenSpec | undefined,
    private readonly tiling: { minNum: number; maxNum: number; thumbnail: boolean },
  ) {
    this.config = config;
    this.tokenizer = tokenizer;
    this.taps = taps;
    this.hidden = config.text.hidden;
  }

  static async load(dir: string, opts: LoadOptions = {}): Promise<VlmPackage> {
    const mpath = path.join(dir, 'manifest.json');
    if (!fs.existsSync(mpath)) throw new VlmError(`${dir} is not a VLM package: no manifest.json (make one with unifusion import-hf)`);
    let manifest: PackageManifest;
    try {
      manifest = JSON.parse(fs.readFileSync(mpath, 'utf8')) as PackageManifest;
    } catch (e) {
      throw new VlmError(`${mpath} is not valid JSON (${(e as Error).message})`);
    }
    const g = manifest.vlm?.generation;
    if (!g) throw new VlmError(`${dir} has no generation graph${manifest.vlm?.skipped ? ` (${manifest.vlm.skipped})` : ' (import it again with this version of unifusion import-hf)'}`);
    const cpath = path.join(dir, 'config.json');
    if (!fs.existsSync(cpath)) throw new VlmError(`${dir} has no config.json`);
    const config = causalLMConfigFromHF(JSON.parse(fs.readFileSync(cpath, 'utf8')) as object);
    const tokenizer = VlmTokenizer.load(dir);
    if (!tokenizer.chat) throw new VlmError(`${dir}: the tokenizer has no chat template (tokenizer_config.json chat_template or chat_template.jinja)`);
    if (tokenizer.vocabSize > config.text.vocab) throw new VlmError(`${dir}: the tokenizer has ${tokenizer.vocabSize} tokens, the model's vocabulary ${config.text.vocab}`);
    const taps = g.outputs.map((o) => /^hidden_states\.(\d+)$/.exec(o.name)?.[1]).filter((x): x is string => x !== undefined).map(Number);
    const gen = readGenerationConfig(dir, config, tokenizer);
    let spec: ImageTokenSpec | undefined;
    const tiling = { minNum: 1, maxNum: 12, thumbnail: true };
    if (config.internvl) {
      spec = internvlImageTokens(tokenizer, config.internvl.imageTokenId);
      const ppFile = path.join(dir, 'preprocessor_config.json');
      const pp = readJsonIf(ppFile);
      if (pp) {
        // the vision graph is built for config.json's tile size; a processor resizing to another would feed it wrong shapes
        const sz = pp.size as { height?: unknown; width?: unknown } | number | undefined;
        const sides = typeof sz === 'number' ? [sz, sz] : sz && typeof sz === 'object' ? [sz.height, sz.width].filter((v) => v !== undefined) : [];
        const tile = config.internvl.vision.imageSize;
        for (const v of sides) if (v !== tile) throw new VlmError(`${ppFile}: size ${JSON.stringify(pp.size)} differs from the vision tower's image_size ${tile} (config.json vision_config)`);
        if (Number.isInteger(pp.min_patches)) tiling.minNum = pp.min_patches as number;
        if (Number.isInteger(pp.max_patches)) tiling.maxNum = pp.max_patches as number;
        if (typeof pp.crop_to_patches === 'boolean' && !pp.crop_to_patches) tiling.maxNum = tiling.minNum = 1;
      }
    }
    const so = { device: opts.device, intraOpThreads: opts.intraOpThreads };
    const session = await Session.load(path.join(dir, g.onnx), so);
    let vision: Session | undefined;
    try {
      if (config.internvl) {
        const v = manifest.vlm?.vision;
        if (!v) throw new VlmError(`${dir}: an InternVL package needs its vision graph (manifest.json vlm.vision)`);
        vision = await Session.load(path.join(dir, v.onnx), so);
      }
    } catch (e) {
      await session.release();
      throw e;
    }
    return new VlmPackage(dir, config, tokenizer, session, vision, taps, gen, spec, tiling);
  }

  /** Image tokens of one image and its pixel_values tiles. */
  private async tiles(img: string | RgbImage): Promise<HostTensor<'f32'>> {
    const decoded = typeof img === 'string' ? await decodeImage(img) : img;
    const iv = this.config.internvl!;
    return dynamicTiles(decoded, { size: iv.vision.imageSize, ...this.tiling }).pixelValues;
  }

  /** Decode, tile and encode every image of the batch: features [N, hidden] and tokens per image per row. */
  private async imageFeatures(reqs: readonly Request[]): Promise<{ features?: HostTensor; perRow: number[][] }> {
    const perRow: number[][] = reqs.map(() => []);
    const chunks: Float32Array[] = [];
    for (const [b, r] of reqs.entries()) {
      if (!r.images?.length) continue;
      if (!this.vision || !this.config.internvl) throw new VlmError(`${this.config.modelType} has no vision tower: prompt ${b} passes ${r.images.length} image(s)`);
      const tpt = tokensPerTile(this.config.internvl);
      for (const img of r.images) {
        const px = await this.tiles(img);
        const f = (await this.vision.run({ pixel_values: px })).image_features!;
        chunks.push(f.data as Float32Array);
        perRow[b]!.push(px.shape[0]! * tpt);
      }
    }
    if (!chunks.length) return { perRow };
    const n = chunks.reduce((a, c) => a + c.length, 0);
    const data = new Float32Array(n);
    let o = 0;
    for (const c of chunks) data.set(c, o), (o += c.length);
    return { features: { dtype: 'f32', shape: [n / this.hidden, this.hidden], data }, perRow };
  }

  /** The image features of some rows of a batch (rows' images in order), for a sub-batch. */
  private rowFeatures(features: HostTensor | undefined, perRow: number[][], rows: readonly number[]): HostTensor | undefined {
    if (!features) return undefined;
    const H = this.hidden, starts: number[] = [];
    let at = 0;
    for (const r of perRow) starts.push(at), (at += r.reduce((a, n) => a + n, 0));
    const n = rows.reduce((a, j) => a + perRow[j]!.reduce((x, y) => x + y, 0), 0);
    if (n === 0) return undefined;
    const src = features.data as Float32Array, data = new Float32Array(n * H);
    let o = 0;
    for (const j of rows) {
      const len = perRow[j]!.reduce((x, y) => x + y, 0) * H;
      data.set(src.subarray(starts[j]! * H, starts[j]! * H + len), o);
      o += len;
    }
    return { dtype: 'f32', shape: [n, H], data };
  }

  private prompt(req: Request, images: number[], system: string | undefined, vars: Record<string, unknown> | undefined): Prompt {
    return buildPrompt(this.tokenizer, { user: req.prompt, system, images, vars }, this.images);
  }

  /** Fit prompt + new tokens into the context: refuse naming both lengths, or cut the user's text with truncate. */
  private fit(p: Prompt, newTokens: number, truncate: boolean | undefined, row: number): Prompt {
    const ctx = this.config.contextLength;
    const over = p.ids.length + newTokens - ctx;
    if (over <= 0) return p;
    const [s, e] = p.userSpan;
    if (!truncate)
      throw new VlmError(`prompt ${row} is ${p.ids.length} tokens${newTokens ? ` + ${newTokens} new tokens = ${p.ids.length + newTokens}` : ''}, longer than the model's context of ${ctx} tokens (use truncate / --truncate to cut the prompt)`);
    if (e - s < over) throw new VlmError(`prompt ${row}: cutting all ${e - s} tokens of the user's text still leaves ${p.ids.length - (e - s) + newTokens} tokens, over the context of ${ctx}`);
    const ids = [...p.ids.slice(0, e - over), ...p.ids.slice(e)];
    return { ...p, ids, userSpan: [s, e - over], imagePositions: p.imagePositions.map((i) => (i >= e ? i - over : i)) };
  }

  private settings(o: GenerationSettings): SamplingSettings {
    return samplingSettings({ temperature: o.temperature, topK: o.topK, topP: o.topP, repetitionPenalty: o.repetitionPenalty, seed: o.seed }, this.gen.defaults);
  }

  /** An explicit max new tokens is checked as given; the default (generation_config's, else 256) shrinks to what the context leaves. */
  private maxNew(o: GenerationSettings, longestPrompt: number): number {
    if (o.maxNewTokens !== undefined) {
      const n = o.maxNewTokens;
      if (!Number.isSafeInteger(n) || n < 1) throw new VlmError(`max new tokens must be an integer >= 1, got ${JSON.stringify(n)}`);
      return n;
    }
    return Math.max(1, Math.min(this.gen.maxNewTokens ?? 256, this.config.contextLength - longestPrompt));
  }

  /** Per-token text for onToken (stop tokens not shown), and a flush for what is held back at the end. */
  private streams(o: GenerationSettings, rows: number[]): { onToken?: (b: number, id: number) => void; flush: () => void } {
    if (!o.onToken) return { flush: () => {} };
    const decs = rows.map(() => new StreamDecoder(this.tokenizer));
    const stop = new Set(this.gen.eos);
    return {
      onToken: (b, id) => {
        if (stop.has(id)) return;
        const t = decs[b]!.push(id);
        if (t) o.onToken!(rows[b]!, t);
      },
      flush: () =>
        decs.forEach((d, b) => {
          const t = d.flush();
          if (t) o.onToken!(rows[b]!, t);
        }),
    };
  }

  private generateOptions(o: GenerationSettings, max: number, sampling: SamplingSettings) {
    return {
      maxNewTokens: max,
      sampling,
      stopIds: this.gen.eos,
      stopStrings: o.stopStrings,
      decode: (ids: readonly number[]) => this.tokenizer.decode(ids, { skipSpecialTokens: true }),
      padId: this.gen.pad ?? this.gen.eos[0] ?? 0,
      padding: o.padding,
    };
  }

  /** Chat generation: the template over (system, prompt, images), decoded text per request. */
  async generate(reqs: readonly Request[], o: GenerationSettings = {}): Promise<{ texts: string[]; rows: RowResult[] }> {
    const sampling = this.settings(o);
    const { features, perRow } = await this.imageFeatures(reqs);
    const built = reqs.map((r, b) => this.prompt(r, perRow[b]!, o.systemPrompt, o.templateVars));
    const max = this.maxNew(o, Math.max(...built.map((p) => p.ids.length)));
    const prompts = built.map((p, b) => this.fit(p, max, o.truncate, b));
    const stream = this.streams(o, reqs.map((_, b) => b));
    const r = await generate(this.model(), prompts.map((p) => p.ids), { ...this.generateOptions(o, max, sampling), onToken: stream.onToken, imageFeatures: features });
    stream.flush();
    return { texts: r.rows.map((row) => this.tokenizer.decode(row.tokens.slice(0, row.kept), { skipSpecialTokens: true })), rows: r.rows };
  }

  private model() {
    return { session: this.session, cfg: this.config, taps: this.taps };
  }

  /** The UniFusion condition for a batch of requests (module header). */
  async condition(reqs: readonly Request[], o: ConditionOptions): Promise<ConditionResult> {
    if (typeof o?.rewrite !== 'boolean') throw new VlmError('condition(): options.rewrite must be true or false');
    if (o.batchSize !== undefined) {
      const n = o.batchSize;
      if (!Number.isSafeInteger(n) || n < 1) throw new VlmError(`batch size must be an integer >= 1, got ${JSON.stringify(n)}`);
      if (o.seeds && o.seeds.length !== reqs.length) throw new VlmError(`${o.seeds.length} seeds for ${reqs.length} requests`);
      if (reqs.length > n) {
        const parts: ConditionResult[] = [];
        for (let from = 0; from < reqs.length; from += n) {
          const onToken = o.onToken;
          parts.push(await this.condition(reqs.slice(from, from + n), { ...o, batchSize: undefined, seeds: o.seeds?.slice(from, from + n), onToken: onToken && ((row, t) => onToken(from + row, t)) }));
        }
        return mergeConditions(parts);
      }
    }
    if (this.taps.length === 0) throw new VlmError(`${this.dir}: the generation graph outputs no hidden-state taps (import with --taps)`);
    const empty = reqs.map((r) => r.prompt.trim() === '' && !r.images?.length);
    const live = reqs.map((_, b) => b).filter((b) => !empty[b]);
    const liveReqs = live.map((b) => reqs[b]!);
    const sampling = this.settings(o);
    const system = o.rewrite ? (o.systemPrompt ?? DEFAULT_SYSTEM_PROMPT) : o.systemPrompt;
    const { features, perRow } = await this.imageFeatures(liveReqs);
    const built = liveReqs.map((r, j) => this.prompt(r, perRow[j]!, system, o.templateVars));
    // teacher-forced rows: their answer's tokens, as generated tokens would be (no specials)
    const answers = liveReqs.map((r, j) => {
      if (r.answer === undefined && r.answerIds === undefined) return undefined;
      if (!o.rewrite) throw new VlmError(`request ${live[j]} gives an answer: teacher forcing is a rewrite's condition (pass rewrite: true)`);
      if (r.answer !== undefined && r.answerIds !== undefined) throw new VlmError(`request ${live[j]}: give answer or answerIds, not both`);
      if (r.answerIds !== undefined) {
        const bad = r.answerIds.find((t) => !(Number.isInteger(t) && t >= 0 && t < this.config.text.vocab));
        if (bad !== undefined) throw new VlmError(`request ${live[j]}: answer token id ${bad} is outside the vocabulary 0..${this.config.text.vocab - 1}`);
        return [...r.answerIds];
      }
      if (typeof r.answer !== 'string') throw new VlmError(`request ${live[j]}: answer must be a string`);
      return this.tokenizer.encode(r.answer, { addSpecialTokens: false });
    });
    const genRows = live.map((_, j) => j).filter((j) => answers[j] === undefined);
    const max = o.rewrite && genRows.length ? this.maxNew(o, Math.max(0, ...genRows.map((j) => built[j]!.ids.length))) : 0;
    const prompts = built.map((p, j) => this.fit(p, answers[j]?.length ?? max, o.truncate, live[j]!));
    const ids = prompts.map((p) => p.ids);
    if (o.seeds && o.seeds.length !== reqs.length) throw new VlmError(`${o.seeds.length} seeds for ${reqs.length} requests`);
    const base = { ...this.generateOptions(o, max, sampling), imageFeatures: features, rowSeeds: o.seeds ? live.map((b) => o.seeds![b]!) : undefined };

    const rows: ConditionRow[] = reqs.map(() => ({ taps: new Map(), select: [] }));
    const rewritten: (string | undefined)[] = reqs.map((_, b) => (empty[b] ? '' : undefined));
    const generatedIds: number[][] = reqs.map(() => []);
    const finish: ConditionResult['finish'] = reqs.map((_, b) => (empty[b] ? 'empty' : 'prefill'));
    if (live.length) {
      if (o.rewrite) {
        const final = o.tapsFrom === 'final-pass';
        if (o.tapsFrom !== undefined && o.tapsFrom !== 'decode' && !final) throw new VlmError(`tapsFrom must be 'decode' or 'final-pass', got ${JSON.stringify(o.tapsFrom)}`);
        // generated rows (all of them unless some are teacher-forced), then the forced ones
        const all = genRows.length === live.length;
        const gIds = all ? ids : genRows.map((j) => ids[j]!);
        const gBase = all ? base : { ...base, imageFeatures: this.rowFeatures(features, perRow, genRows), rowSeeds: base.rowSeeds && genRows.map((j) => base.rowSeeds![j]!) };
        const done: { j: number; taps: Map<number, Float32Array[]>; tokens: number[]; finish: ConditionResult['finish'][number] }[] = [];
        if (genRows.length) {
          const stream = this.streams(o, genRows.map((j) => live[j]!));
          const r = await generate(this.model(), gIds, { ...gBase, collectTaps: !final, onToken: stream.onToken });
          stream.flush();
          let tapRows = r.rows;
          if (final) {
            // one pass over [prompt; kept generated tokens]: the same positions, masks and images
            const full = r.rows.map((row, k) => [...gIds[k]!, ...row.tokens.slice(0, row.kept)]);
            tapRows = (await generate(this.model(), full, { ...gBase, maxNewTokens: 0, collectTaps: true })).rows;
          }
          genRows.forEach((j, k) => done.push({ j, taps: tapRows[k]!.taps!, tokens: r.rows[k]!.tokens.slice(0, r.rows[k]!.kept), finish: r.rows[k]!.finish }));
        }
        const forced = live.map((_, j) => j).filter((j) => answers[j] !== undefined);
        if (forced.length) {
          // exactly the final pass a generation of these tokens would get
          const full = forced.map((j) => [...ids[j]!, ...answers[j]!]);
          const fBase = { ...base, imageFeatures: forced.length === live.length ? features : this.rowFeatures(features, perRow, forced), rowSeeds: undefined };
          const r = await generate(this.model(), full, { ...fBase, maxNewTokens: 0, collectTaps: true });
          forced.forEach((j, k) => done.push({ j, taps: r.rows[k]!.taps!, tokens: answers[j]!, finish: 'forced' }));
        }
        for (const d of done) {
          const b = live[d.j]!, P = ids[d.j]!.length;
          rows[b] = { taps: d.taps, select: [...prompts[d.j]!.imagePositions, ...Array.from({ length: d.tokens.length }, (_, k) => P + k)] };
          rewritten[b] = this.tokenizer.decode(d.tokens, { skipSpecialTokens: true });
          generatedIds[b] = d.tokens;
          finish[b] = d.finish;
        }
      } else {
        const r = await generate(this.model(), ids, { ...base, maxNewTokens: 0, collectTaps: true });
        live.forEach((b, j) => {
          const p = prompts[j]!;
          const [s, e] = o.keepTemplate ? [0, p.ids.length] : p.userSpan;
          const sel = new Set([...p.imagePositions, ...Array.from({ length: e - s }, (_, k) => s + k)]);
          rows[b] = { taps: r.rows[j]!.taps!, select: [...sel].sort((x, y) => x - y) };
        });
      }
    }
    const { tensors, lengths } = assembleCondition(rows, this.taps, this.hidden);
    const promptIds: number[][] = reqs.map(() => []);
    live.forEach((b, j) => (promptIds[b] = ids[j]!));
    return { tensors, rewritten, lengths, promptIds, generatedIds, finish };
  }

  async close(): Promise<void> {
    await this.session.release();
    await this.vision?.release();
  }
}

/** Results of consecutive request chunks as one: rows concatenated, the token axis padded to the longest (mask false). */
function mergeConditions(parts: readonly ConditionResult[]): ConditionResult {
  const tensors: Record<string, HostTensor> = {};
  const B = parts.reduce((a, p) => a + p.lengths.length, 0);
  const S = Math.max(1, ...parts.map((p) => p.tensors.condition_mask!.shape[1]!));
  for (const name of Object.keys(parts[0]!.tensors)) {
    const t0 = parts[0]!.tensors[name]!;
    const inner = t0.shape.slice(2).reduce((a, x) => a * x, 1);
    const data = name === 'condition_mask' ? new Uint8Array(B * S) : new Float32Array(B * S * inner);
    let row = 0;
    for (const p of parts) {
      const t = p.tensors[name]!, s = t.shape[1]!;
      for (let b = 0; b < t.shape[0]!; b++, row++) (data as Float32Array).set((t.data as Float32Array).subarray(b * s * inner, (b + 1) * s * inner), row * S * inner);
    }
    tensors[name] = { dtype: t0.dtype, shape: [B, S, ...t0.shape.slice(2)], data } as HostTensor;
  }
  return {
    tensors,
    rewritten: parts.flatMap((p) => p.rewritten),
    lengths: parts.flatMap((p) => p.lengths),
    promptIds: parts.flatMap((p) => p.promptIds),
    generatedIds: parts.flatMap((p) => p.generatedIds),
    finish: parts.flatMap((p) => p.finish),
  };
}

function readJsonIf(file: string): Record<string, unknown> | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new VlmError(`${file} is not valid JSON (${(e as Error).message})`);
  }
}

/** eos / pad ids and sampling defaults: generation_config.json, else config.json, else the tokenizer. */
function readGenerationConfig(dir: string, config: CausalLMConfig, tok: VlmTokenizer): GenerationConfig {
  const gc = readJsonIf(path.join(dir, 'generation_config.json')) ?? {};
  const cj = readJsonIf(path.join(dir, 'config.json')) ?? {};
  const tc = (cj.text_config && typeof cj.text_config === 'object' ? cj.text_config : {}) as Record<string, unknown>;
  let eos = ints(gc.eos_token_id);
  if (!eos.length) eos = ints(cj.eos_token_id ?? tc.eos_token_id);
  const tokEos = tok.special.eos !== undefined ? tok.tokenToId(tok.special.eos) : undefined;
  if (tokEos !== undefined && !eos.includes(tokEos)) eos.push(tokEos);
  for (const id of eos) if (id < 0 || id >= config.text.vocab) throw new VlmError(`${dir}: eos token id ${id} is outside the vocabulary 0..${config.text.vocab - 1}`);
  const padCands = [...ints(gc.pad_token_id), ...ints(cj.pad_token_id ?? tc.pad_token_id)];
  const tokPad = tok.special.pad !== undefined ? tok.tokenToId(tok.special.pad) : undefined;
  const pad = padCands[0] ?? tokPad;
  const num = (k: string) => (typeof gc[k] === 'number' ? (gc[k] as number) : undefined);
  const defaults: Partial<SamplingSettings> = {};
  if (typeof gc.do_sample === 'boolean') defaults.doSample = gc.do_sample;
  if (num('temperature') !== undefined && num('temperature')! > 0) defaults.temperature = num('temperature');
  if (num('top_p') !== undefined) defaults.topP = num('top_p');
  defaults.topK = num('top_k') ?? 50; // transformers' GenerationConfig default, applied when sampling
  if (num('repetition_penalty') !== undefined) defaults.repetitionPenalty = num('repetition_penalty');
  const mnt = num('max_new_tokens');
  return { eos, pad, defaults, maxNewTokens: mnt !== undefined && Number.isSafeInteger(mnt) && mnt > 0 ? mnt : undefined };
}
