// The decoding loop over a generation graph (graphs/vlm/generation.ts): prefill the padded batch
// of prompts, then one token per step, the KV cache carried from each step's present.* outputs to
// the next step's past_key_values.* inputs as the onnxruntime tensors themselves (no conversion,
// no JS copy). Greedy or sampled (sampling.ts), stop ids, stop strings, max new tokens, left or
// right padding, a per-token callback, and optionally every fed token's hidden-state taps.
//
// Positions and masks are transformers' generate(): position = (real tokens before it in the
// row), pads at 1; each step appends a mask column of 1 for every row; a finished row is fed the
// pad id (its results are ignored). Left padding (transformers' requirement) puts every row's last
// prompt token at the same slot; right padding works too: the graph's logits come from each row's
// last real token and the pads stay masked, so a right-padded row equals its unpadded run
// (except on sliding-window layers, whose window counts cache slots as transformers' does).
import * as ort from 'onnxruntime-node';
import type { Session } from '../session.ts';
import type { HostTensor } from '../../src/io/host.ts';
import { PAST_KEY, PAST_VALUE, PRESENT_KEY, PRESENT_VALUE, type CausalLMConfig } from '../../graphs/vlm/generation.ts';
import { TokenSampler, type SamplingSettings } from './sampling.ts';

export class GenerationError extends Error {
  override name = 'GenerationError';
}

export type FinishReason = 'stop' | 'stop-string' | 'length';

export interface GenerateOptions {
  maxNewTokens: number;
  sampling: SamplingSettings;
  /** token ids that end a row (included in `tokens`, not in `kept`) */
  stopIds: readonly number[];
  /** texts that end a row; the tokens from the one where the text starts are not `kept` */
  stopStrings?: readonly string[];
  /** needed for stop strings */
  decode?: (ids: readonly number[]) => string;
  padId: number;
  padding?: 'left' | 'right';
  /** hidden-state taps of every prompt token and every kept generated token */
  collectTaps?: boolean;
  /** called with each row's new token, in row order, every step */
  onToken?: (row: number, id: number) => void;
  /** one sampling seed per prompt (default: the settings' seed, one stream per row) */
  rowSeeds?: readonly number[];
  /** InternVL: image features f32 [N, hidden] for the prompts' image tokens, in order */
  imageFeatures?: HostTensor;
  /**
   * 'reuse' (default): present.* outputs are fed back as they are; 'preallocate': the next
   * step's present.* tensors are allocated in JS and handed to onnxruntime as fetches, so it
   * writes into them (measured in bench/decode.ts).
   */
  cache?: 'reuse' | 'preallocate';
}

export interface RowResult {
  prompt: number[];
  /** generated tokens, the stop token included (as transformers' sequences) */
  tokens: number[];
  /** how many of `tokens` belong to the output (stop token and stop-string tail excluded) */
  kept: number;
  finish: FinishReason;
  /**
   * taps by hidden_states index: one Float32Array [hidden] per prompt token, then per kept
   * generated token (collectTaps only)
   */
  taps?: Map<number, Float32Array[]>;
}

export interface GenerateResult {
  rows: RowResult[];
  stats: { prefillTokens: number; prefillMs: number; steps: number; decodeMs: number };
}

/** The generation graph's session with what the loop needs to know about it. */
export interface DecoderModel {
  session: Session;
  cfg: CausalLMConfig;
  /** hidden_states indices the graph outputs */
  taps: readonly number[];
}

const i64 = (data: BigInt64Array, dims: number[]) => new ort.Tensor('int64', data, dims);

export async function generate(model: DecoderModel, prompts: readonly (readonly number[])[], o: GenerateOptions): Promise<GenerateResult> {
  const { cfg } = model;
  const t = cfg.text;
  const B = prompts.length;
  if (B === 0) return { rows: [], stats: { prefillTokens: 0, prefillMs: 0, steps: 0, decodeMs: 0 } };
  if (!Number.isSafeInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new GenerationError(`max new tokens must be a non-negative integer, got ${o.maxNewTokens}`);
  for (const [b, p] of prompts.entries()) {
    if (p.length === 0) throw new GenerationError(`prompt ${b} has no tokens`);
    if (p.length + o.maxNewTokens > cfg.contextLength) throw new GenerationError(`prompt ${b} has ${p.length} tokens; with ${o.maxNewTokens} new tokens that is ${p.length + o.maxNewTokens}, over the model's context of ${cfg.contextLength} (max_position_embeddings)`);
    for (const id of p) if (!Number.isInteger(id) || id < 0 || id >= t.vocab) throw new GenerationError(`prompt ${b}: token id ${id} is outside the vocabulary 0..${t.vocab - 1}`);
  }
  if (o.stopStrings?.length && !o.decode) throw new GenerationError('stop strings need a decode function');
  const right = o.padding === 'right';
  const S = Math.max(...prompts.map((p) => p.length));
  if (o.rowSeeds && o.rowSeeds.length !== B) throw new GenerationError(`${o.rowSeeds.length} row seeds for ${B} prompts`);
  const sampler = new TokenSampler(o.sampling, o.rowSeeds);
  const L = t.layers;
  const taps = o.collectTaps ? [...model.taps] : [];
  if (o.collectTaps && taps.length === 0) throw new GenerationError('the generation graph outputs no hidden-state taps');
  const H = t.hidden;

  // ---- prefill feeds
  const ids = new BigInt64Array(B * S).fill(BigInt(o.padId));
  const mask: number[][] = Array.from({ length: B }, () => new Array<number>(S).fill(0));
  const pos = new BigInt64Array(B * S).fill(1n);
  const offset: number[] = []; // slot of each row's first prompt token
  const nextPos: number[] = [];
  prompts.forEach((p, b) => {
    const off = right ? 0 : S - p.length;
    offset.push(off);
    p.forEach((id, j) => {
      ids[b * S + off + j] = BigInt(id);
      mask[b]![off + j] = 1;
      pos[b * S + off + j] = BigInt(j);
    });
    nextPos.push(p.length);
  });
  const maskTensor = () => {
    const T = mask[0]!.length;
    const d = new BigInt64Array(B * T);
    mask.forEach((row, b) => row.forEach((v, j) => (d[b * T + j] = BigInt(v))));
    return i64(d, [B, T]);
  };
  const positions = (flat: BigInt64Array, s: number) => (cfg.mrope ? i64(BigInt64Array.from([...flat, ...flat, ...flat]), [3, B, s]) : i64(flat, [B, s]));
  let past: Record<string, ort.Tensor> = {};
  for (let l = 0; l < L; l++) {
    past[PAST_KEY(l)] = new ort.Tensor('float32', new Float32Array(0), [B, t.kvHeads, 0, t.headDim]);
    past[PAST_VALUE(l)] = new ort.Tensor('float32', new Float32Array(0), [B, t.kvHeads, 0, t.headDim]);
  }
  const hasImages = cfg.internvl !== undefined;
  const noImages = new ort.Tensor('float32', new Float32Array(0), [0, H]);
  let imageFeed: ort.Tensor | undefined;
  if (o.imageFeatures) {
    if (!hasImages) throw new GenerationError(`${cfg.modelType} has no vision input: image features cannot be passed`);
    const f = o.imageFeatures;
    if (f.dtype !== 'f32' || f.shape.length !== 2 || f.shape[1] !== H) throw new GenerationError(`image features must be f32 [N, ${H}], got ${f.dtype}[${f.shape}]`);
    const want = prompts.reduce((a, p) => a + p.filter((id) => id === cfg.internvl!.imageTokenId).length, 0);
    if (want !== f.shape[0]) throw new GenerationError(`the prompts hold ${want} image tokens (id ${cfg.internvl!.imageTokenId}) but ${f.shape[0]} image features were given`);
    imageFeed = new ort.Tensor('float32', f.data as Float32Array, f.shape);
  }

  const fetchNames = ['logits', ...Array.from({ length: L }, (_, l) => [PRESENT_KEY(l), PRESENT_VALUE(l)]).flat(), ...taps.map((i) => `hidden_states.${i}`)];
  const run = async (feedIds: ort.Tensor, feedPos: ort.Tensor, images: ort.Tensor | undefined): Promise<Record<string, ort.Tensor>> => {
    const feeds: Record<string, ort.Tensor> = { input_ids: feedIds, attention_mask: maskTensor(), position_ids: feedPos, ...past };
    if (hasImages) feeds.image_features = images ?? noImages;
    const fetches: Record<string, ort.Tensor | null> = {};
    const T = mask[0]!.length;
    for (const n of fetchNames) fetches[n] = null;
    if (o.cache === 'preallocate')
      for (let l = 0; l < L; l++)
        for (const n of [PRESENT_KEY(l), PRESENT_VALUE(l)]) fetches[n] = new ort.Tensor('float32', new Float32Array(B * t.kvHeads * T * t.headDim), [B, t.kvHeads, T, t.headDim]);
    const out = await model.session.runOrt(feeds, fetches);
    const next: Record<string, ort.Tensor> = {};
    for (let l = 0; l < L; l++) {
      next[PAST_KEY(l)] = out[PRESENT_KEY(l)]!;
      next[PAST_VALUE(l)] = out[PRESENT_VALUE(l)]!;
    }
    past = next;
    return out;
  };

  const rows: RowResult[] = prompts.map((p) => ({ prompt: [...p], tokens: [], kept: 0, finish: 'length' as FinishReason, ...(o.collectTaps ? { taps: new Map(taps.map((i) => [i, [] as Float32Array[]])) } : {}) }));
  const done = new Array<boolean>(B).fill(o.maxNewTokens === 0);
  const V = t.vocab;
  const logitsRow = (lg: ort.Tensor, b: number) => (lg.data as Float32Array).subarray(b * V, (b + 1) * V);
  /** append the taps of chunk slot `slot(b)` of each row in `which` */
  const collect = (out: Record<string, ort.Tensor>, s: number, which: readonly number[], slots: (b: number) => readonly number[]) => {
    for (const i of taps) {
      const hs = out[`hidden_states.${i}`]!.data as Float32Array;
      for (const b of which) for (const j of slots(b)) rows[b]!.taps!.get(i)!.push(hs.slice((b * s + j) * H, (b * s + j + 1) * H));
    }
  };

  const t0 = performance.now();
  let out = await run(i64(ids, [B, S]), positions(pos, S), imageFeed);
  const prefillMs = performance.now() - t0;
  const all = Array.from({ length: B }, (_, b) => b);
  if (o.collectTaps) collect(out, S, all, (b) => Array.from({ length: prompts[b]!.length }, (_, j) => offset[b]! + j));

  const stopIds = new Set(o.stopIds);
  /** one token for every running row: [id, its index in the row's tokens] (-1: the row had finished) */
  const pick = (lg: ort.Tensor): [number, number][] =>
    all.map((b) => {
      const r = rows[b]!;
      if (done[b]) return [o.padId, -1];
      const id = sampler.next(logitsRow(lg, b), o.sampling.repetitionPenalty !== 1 ? [...r.prompt, ...r.tokens] : [], b);
      r.tokens.push(id);
      o.onToken?.(b, id);
      if (stopIds.has(id)) [done[b], r.finish, r.kept] = [true, 'stop', r.tokens.length - 1];
      else if (o.stopStrings?.length) {
        const text = o.decode!(r.tokens);
        const hits = o.stopStrings.map((x) => (x === '' ? -1 : text.indexOf(x))).filter((x) => x >= 0);
        if (hits.length) {
          // keep the tokens that end before the stop string starts
          const at = Math.min(...hits);
          let k = r.tokens.length - 1;
          while (k > 0 && o.decode!(r.tokens.slice(0, k)).length > at) k--;
          [done[b], r.finish, r.kept] = [true, 'stop-string', k];
        }
      }
      if (!done[b] && r.tokens.length >= o.maxNewTokens) [done[b], r.finish, r.kept] = [true, 'length', r.tokens.length];
      return [id, r.tokens.length - 1];
    });

  const t1 = performance.now();
  let steps = 0;
  let next = done.every((d) => d) ? [] : pick(out.logits!);
  for (;;) {
    // feed a row's new token while it runs; with taps, also a finished row's last kept token
    const feeding = all.filter((b) => next[b] && next[b][1] >= 0 && (!done[b] || (o.collectTaps && next[b][1] < rows[b]!.kept)));
    if (feeding.length === 0) break;
    for (const row of mask) row.push(1);
    const stepPos = new BigInt64Array(B);
    for (let b = 0; b < B; b++) stepPos[b] = BigInt(nextPos[b]!++);
    out = await run(i64(BigInt64Array.from(next.map(([id]) => BigInt(id))), [B, 1]), positions(stepPos, 1), undefined);
    steps++;
    if (o.collectTaps) collect(out, 1, feeding, () => [0]);
    if (done.every((d) => d)) break;
    next = pick(out.logits!);
  }
  if (o.collectTaps)
    for (const r of rows)
      for (const list of r.taps!.values()) list.length = Math.min(list.length, r.prompt.length + r.kept);
  return { rows, stats: { prefillTokens: prompts.reduce((a, p) => a + p.length, 0), prefillMs, steps, decodeMs: performance.now() - t1 } };
}
