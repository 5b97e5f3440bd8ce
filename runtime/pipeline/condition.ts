// The condition side of a pipeline: what a prompt encoder hands the DiT, and the batching of it.
//
// A condition is the DiT's taps-mode inputs for some prompts: hidden_states.<i> f32 [B, S, hE],
// condition_mask bool [B, S] (and key/value states for kv-fusion), with S the token axis. Prompts
// of different lengths are right-padded to one S with mask false, which the refiner and the DiT
// ignore as keys; so conditional and unconditional rows can share one batched DiT call.
import type { HostTensor } from '../../src/io/host.ts';
import type { RgbImage } from '../images/png.ts';

export type Condition = Record<string, HostTensor>;

export interface ConditionRequest {
  prompt: string;
  /** images in the VLM prompt (editing, multi-reference, reconstruction) */
  images?: RgbImage[];
  /** with rewrite: teacher forcing, the VLM's answer to condition on instead of generating one (runtime/vlm) */
  answer?: string;
  /** the answer as token ids; exclusive with answer */
  answerIds?: number[];
}

export interface ConditionOptions {
  /** VERIFI: let the VLM rewrite the prompt, condition on the generated tokens */
  rewrite: boolean;
  systemPrompt?: string;
  /** without rewrite: keep the chat template's fixed prefix / suffix tokens (pipeline.json dropTemplate: false) */
  keepTemplate?: boolean;
  /** prompts per VLM batch (runtime/vlm condition() chunks) */
  batchSize?: number;
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  onToken?: (request: number, token: string) => void;
}

export interface ConditionResult {
  /** exactly the DiT's condition inputs, batch = number of requests */
  tensors: Condition;
  /** the VLM's rewritten prompt per request (undefined without rewrite) */
  rewritten: (string | undefined)[];
}

/**
 * Anything that turns prompts into conditions: runtime/vlm's VlmPackage (its `condition` has this
 * signature), a cache of precomputed conditions, or a test double.
 */
export interface PromptEncoder {
  condition(reqs: ConditionRequest[], opts: ConditionOptions): Promise<ConditionResult>;
  close?(): Promise<void>;
}

export class ConditionError extends Error {
  override name = 'ConditionError';
}

/** Where the token axis is in each condition input (from the DiT manifest's symbolic 'seq'). */
export type SeqAxes = Record<string, number>;

function rowSize(t: HostTensor): number {
  return t.shape.slice(1).reduce((a, b) => a * b, 1);
}

/** Rows [from, to) of every tensor (batch axis 0). */
export function sliceRows(c: Condition, from: number, to: number): Condition {
  const out: Condition = {};
  for (const [k, t] of Object.entries(c)) {
    const r = rowSize(t);
    out[k] = { dtype: t.dtype, shape: [to - from, ...t.shape.slice(1)], data: t.data.slice(from * r, to * r) } as HostTensor;
  }
  return out;
}

/** Pad one tensor's `axis` to `len` with zeros (false for masks). */
function padAxis(t: HostTensor, axis: number, len: number): HostTensor {
  const cur = t.shape[axis]!;
  if (cur === len) return t;
  if (cur > len) throw new ConditionError(`cannot pad axis ${axis} of ${cur} down to ${len}`);
  const outer = t.shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = t.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const shape = [...t.shape];
  shape[axis] = len;
  const Ctor = t.data.constructor as new (n: number) => typeof t.data;
  const data = new Ctor(outer * len * inner);
  for (let o = 0; o < outer; o++) (data as Float32Array).set(t.data.subarray(o * cur * inner, (o + 1) * cur * inner) as Float32Array, o * len * inner);
  return { dtype: t.dtype, shape, data } as HostTensor;
}

/** Concatenate conditions along the batch, padding every token axis to the longest. */
export function concatConditions(parts: readonly Condition[], seqAxes: SeqAxes): Condition {
  if (parts.length === 0) throw new ConditionError('no conditions to batch');
  const names = Object.keys(parts[0]!).sort();
  parts.forEach((p, i) => {
    const n = Object.keys(p).sort();
    if (n.join() !== names.join()) throw new ConditionError(`condition ${i} has tensors [${n.join(', ')}], condition 0 [${names.join(', ')}]`);
  });
  const out: Condition = {};
  for (const name of names) {
    const axis = seqAxes[name];
    const ts = parts.map((p) => p[name]!);
    const len = axis === undefined ? 0 : Math.max(...ts.map((t) => t.shape[axis]!));
    const padded = axis === undefined ? ts : ts.map((t) => padAxis(t, axis, len));
    const t0 = padded[0]!;
    padded.forEach((t, i) => {
      if (t.dtype !== t0.dtype || t.shape.length !== t0.shape.length || t.shape.some((d, k) => k > 0 && d !== t0.shape[k]))
        throw new ConditionError(`condition tensor '${name}' of part ${i} is ${t.dtype}[${t.shape}], part 0 ${t0.dtype}[${t0.shape}]`);
    });
    const rows = padded.reduce((a, t) => a + t.shape[0]!, 0);
    const Ctor = t0.data.constructor as new (n: number) => typeof t0.data;
    const data = new Ctor(rows * rowSize(t0));
    let at = 0;
    for (const t of padded) (data as Float32Array).set(t.data as Float32Array, at), (at += t.data.length);
    out[name] = { dtype: t0.dtype, shape: [rows, ...t0.shape.slice(1)], data } as HostTensor;
  }
  return out;
}

/** Each row repeated `times` times in place (row 0 x times, row 1 x times, ...). */
export function repeatRows(c: Condition, times: number): Condition {
  if (times === 1) return c;
  const out: Condition = {};
  for (const [k, t] of Object.entries(c)) {
    const r = rowSize(t), B = t.shape[0]!;
    const Ctor = t.data.constructor as new (n: number) => typeof t.data;
    const data = new Ctor(B * times * r);
    for (let b = 0; b < B; b++) for (let j = 0; j < times; j++) (data as Float32Array).set(t.data.subarray(b * r, (b + 1) * r) as Float32Array, (b * times + j) * r);
    out[k] = { dtype: t.dtype, shape: [B * times, ...t.shape.slice(1)], data } as HostTensor;
  }
  return out;
}

/** Check a condition against the DiT's inputs: names, dtypes, ranks, fixed dims, one batch size. */
export function checkCondition(c: Condition, want: readonly { name: string; dtype: string; shape: (number | string)[] }[], what: string): number {
  const names = new Set(want.map((w) => w.name));
  for (const k of Object.keys(c)) if (!names.has(k)) throw new ConditionError(`${what}: tensor '${k}' is not a condition input of the DiT (it takes ${[...names].join(', ')})`);
  let batch: number | undefined;
  for (const w of want) {
    const t = c[w.name];
    if (!t) throw new ConditionError(`${what}: missing condition tensor '${w.name}' (${w.dtype}[${w.shape.join(', ')}])`);
    if (t.dtype !== w.dtype || t.shape.length !== w.shape.length) throw new ConditionError(`${what}: '${w.name}' is ${t.dtype}[${t.shape}], the DiT takes ${w.dtype}[${w.shape.join(', ')}]`);
    w.shape.forEach((d, i) => {
      if (typeof d === 'number' && t.shape[i] !== d) throw new ConditionError(`${what}: '${w.name}' dim ${i} is ${t.shape[i]}, the DiT takes ${d} (${w.dtype}[${w.shape.join(', ')}])`);
    });
    if (batch === undefined) batch = t.shape[0];
    else if (t.shape[0] !== batch) throw new ConditionError(`${what}: '${w.name}' has ${t.shape[0]} rows, other tensors ${batch}`);
  }
  return batch ?? 0;
}

/**
 * A PromptEncoder over precomputed conditions (the `encode` command's output, a training cache,
 * or tests): prompt text -> that prompt's condition (batch 1). Images are refused: they need a VLM.
 */
export class CachedPromptEncoder implements PromptEncoder {
  constructor(
    private readonly byPrompt: ReadonlyMap<string, Condition>,
    private readonly label = 'precomputed conditions',
  ) {}
  async condition(reqs: ConditionRequest[], opts: ConditionOptions): Promise<ConditionResult> {
    const seqAxes: SeqAxes = {};
    const parts = reqs.map((r) => {
      if (r.images?.length) throw new ConditionError(`${this.label}: image prompts need the pipeline's VLM`);
      if (opts.rewrite) throw new ConditionError(`${this.label}: prompt rewriting needs the pipeline's VLM (pass rewrite: false / --no-rewrite)`);
      const c = this.byPrompt.get(r.prompt);
      if (!c) throw new ConditionError(`${this.label}: no condition for the prompt ${JSON.stringify(r.prompt)} (known: ${[...this.byPrompt.keys()].slice(0, 5).map((k) => JSON.stringify(k)).join(', ')})`);
      for (const [k, t] of Object.entries(c)) seqAxes[k] = k.startsWith('key_states.') || k.startsWith('value_states.') ? 2 : t.shape.length >= 2 ? 1 : 0;
      return c;
    });
    return { tensors: concatConditions(parts, seqAxes), rewritten: reqs.map(() => undefined) };
  }
}
