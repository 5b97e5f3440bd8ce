// Next-token choice: transformers' logits processors (repetition penalty, temperature, top-k,
// top-p, in generate()'s order) over one row of logits, then greedy argmax or a draw from the
// processed distribution with a seeded RNG. Settings are validated here so every caller (CLI,
// library) reports bad values the same way.
import { Rng } from '../../src/ir/init.ts';

export class SamplingError extends Error {
  override name = 'SamplingError';
}

export interface SamplingSettings {
  /** sample (true) or take the argmax (false); default: true when temperature > 0 was given */
  doSample: boolean;
  /** > 0; 1 = unchanged */
  temperature: number;
  /** 0 = off; keep the k highest scores */
  topK: number;
  /** (0, 1]; 1 = off; keep the smallest set whose probability reaches top_p */
  topP: number;
  /** >= 1 is the usual range (> 0 required); 1 = off */
  repetitionPenalty: number;
  seed: number;
}

/** Check one numeric setting; `what` names the flag / option. */
export function checkSetting(what: string, v: unknown, range: { min?: number; max?: number; minExclusive?: boolean; integer?: boolean }): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new SamplingError(`${what} must be a number, got ${JSON.stringify(v)}`);
  if (range.integer && !Number.isSafeInteger(n)) throw new SamplingError(`${what} must be an integer, got ${n}`);
  if (range.min !== undefined && (range.minExclusive ? !(n > range.min) : !(n >= range.min)))
    throw new SamplingError(`${what} must be ${range.minExclusive ? '>' : '>='} ${range.min}, got ${n}`);
  if (range.max !== undefined && !(n <= range.max)) throw new SamplingError(`${what} must be <= ${range.max}, got ${n}`);
  return n;
}

/** Settings from partial options (CLI strings or numbers), with these defaults: greedy, T 1, top-k off, top-p 1, penalty 1, seed 0. */
export function samplingSettings(o: { doSample?: boolean; temperature?: unknown; topK?: unknown; topP?: unknown; repetitionPenalty?: unknown; seed?: unknown }, defaults: Partial<SamplingSettings> = {}): SamplingSettings {
  const temperature = o.temperature === undefined ? (defaults.temperature ?? 1) : checkSetting('temperature', o.temperature, { min: 0 });
  const s: SamplingSettings = {
    doSample: o.doSample ?? (o.temperature !== undefined ? temperature > 0 : (defaults.doSample ?? false)),
    temperature: temperature === 0 ? 1 : temperature,
    topK: o.topK === undefined ? (defaults.topK ?? 0) : checkSetting('top-k', o.topK, { min: 0, integer: true }),
    topP: o.topP === undefined ? (defaults.topP ?? 1) : checkSetting('top-p', o.topP, { min: 0, max: 1, minExclusive: true }),
    repetitionPenalty: o.repetitionPenalty === undefined ? (defaults.repetitionPenalty ?? 1) : checkSetting('repetition penalty', o.repetitionPenalty, { min: 0, minExclusive: true }),
    seed: o.seed === undefined ? (defaults.seed ?? 0) : checkSetting('seed', o.seed, { min: 0, max: 2 ** 32 - 1, integer: true }),
  };
  return s;
}

/** transformers' RepetitionPenaltyLogitsProcessor: each token seen so far: s < 0 ? s * p : s / p. */
export function repetitionPenalty(scores: Float64Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const t of new Set(seen)) {
    const s = scores[t]!;
    scores[t] = s < 0 ? s * penalty : s / penalty;
  }
}

export function temperature(scores: Float64Array, t: number): void {
  if (t === 1) return;
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / t;
}

/** TopKLogitsWarper: scores below the k-th highest become -inf (ties with it are kept). */
export function topK(scores: Float64Array, k: number): void {
  if (k <= 0 || k >= scores.length) return;
  const kth = Float64Array.from(scores).sort((a, b) => b - a)[k - 1]!;
  for (let i = 0; i < scores.length; i++) if (scores[i]! < kth) scores[i] = -Infinity;
}

/**
 * TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability is <= 1 - p,
 * always keeping the highest one.
 */
export function topP(scores: Float64Array, p: number): void {
  if (p >= 1) return;
  const order = Array.from(scores.keys()).sort((a, b) => scores[a]! - scores[b]! || a - b);
  const probs = softmax(scores);
  let cum = 0;
  for (let j = 0; j < order.length - 1; j++) {
    cum += probs[order[j]!]!;
    if (cum <= 1 - p) scores[order[j]!] = -Infinity;
  }
}

export function softmax(scores: Float64Array): Float64Array {
  let max = -Infinity;
  for (const s of scores) if (s > max) max = s;
  const out = new Float64Array(scores.length);
  if (max === -Infinity) return out.fill(1 / scores.length);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += out[i] = Math.exp(scores[i]! - max);
  for (let i = 0; i < scores.length; i++) out[i] = out[i]! / sum;
  return out;
}

export function argmax(scores: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
}

/** The processors generate() runs, in its order: repetition penalty, then temperature, top-k, top-p when sampling. */
export function processLogits(logits: ArrayLike<number>, seen: Iterable<number>, s: SamplingSettings): Float64Array {
  const x = Float64Array.from(logits);
  repetitionPenalty(x, seen, s.repetitionPenalty);
  if (s.doSample) {
    temperature(x, s.temperature);
    topK(x, s.topK);
    topP(x, s.topP);
  }
  return x;
}

/**
 * Picks tokens with one seeded RNG stream per row (row r: seed `rowSeeds[r]`, default the
 * settings' seed with the row number as stream), so a row's draws do not depend on the other rows
 * of its batch: a dataset encoded in batches of 8 or of 1 samples the same tokens (up to float
 * rounding of the logits).
 */
export class TokenSampler {
  private readonly rngs = new Map<number, Rng>();
  constructor(readonly settings: SamplingSettings, private readonly rowSeeds?: readonly number[]) {}
  private rng(row: number): Rng {
    let r = this.rngs.get(row);
    if (!r) this.rngs.set(row, (r = this.rowSeeds ? new Rng(this.rowSeeds[row] ?? this.settings.seed, 'unifusion-sampling') : new Rng(this.settings.seed, `unifusion-sampling-${row}`)));
    return r;
  }
  next(logits: ArrayLike<number>, seen: Iterable<number>, row = 0): number {
    const x = processLogits(logits, seen, this.settings);
    if (!this.settings.doSample) return argmax(x);
    const p = softmax(x);
    const u = this.rng(row).uniform();
    let cum = 0;
    let last = 0;
    for (let i = 0; i < p.length; i++) {
      if (p[i]! === 0) continue;
      last = i;
      cum += p[i]!;
      if (u < cum) return i;
    }
    return last; // rounding: u above the float sum
  }
}
