// Flow-matching noise schedules: the sigmas (= the DiT's timestep t in [0, 1], x_t = (1 - t) x0 + t eps)
// that a sampler walks from pure noise (1) to the image (0).
//
// As FLUX / SD3 / Krea 2 do it (diffusers FlowMatchEulerDiscreteScheduler + the pipelines):
//   base      sigma_i = linspace(1, 1/N, N)                       (never 0: the model is not asked at t = 0
//                                                                 by Euler; the final 0 is appended)
//   static    s * sigma / (1 + (s - 1) sigma)                      (SD3's shift s; s = 3 at 1024^2)
//   dynamic   e^mu / (e^mu + (1/sigma - 1))                        (FLUX: mu linear in the image tokens
//                                                                 between (baseSeq, baseShift) and (maxSeq, maxShift))
//   terminal  1 - (1 - sigma) / ((1 - sigma_last) / (1 - terminal)) (stretch so the last sigma is `terminal`)
//   user      any strictly decreasing sigmas in (0, 1]
// Both shifts move steps towards high noise, where large images need them (their low frequencies
// survive more noise); the dynamic one scales that with resolution.

export interface DynamicShift {
  baseSeq: number;
  baseShift: number;
  maxSeq: number;
  maxShift: number;
}

/** FLUX.1's constants (diffusers' FluxPipeline defaults). */
export const FLUX_SHIFT: DynamicShift = { baseSeq: 256, baseShift: 0.5, maxSeq: 4096, maxShift: 1.15 };
/** Krea 2's constants (its scheduler config): the same base, saturating at 6400 tokens. */
export const KREA2_SHIFT: DynamicShift = { baseSeq: 256, baseShift: 0.5, maxSeq: 6400, maxShift: 1.15 };

export interface ScheduleOptions {
  /** number of steps N (model evaluations per image: N for Euler, 2N for Heun) */
  steps: number;
  /** static shift s (1 = none) */
  shift?: number;
  /** resolution-dependent shift; needs imageTokens */
  dynamicShift?: DynamicShift;
  /** DiT image tokens (latent h/p * w/p), for the dynamic shift */
  imageTokens?: number;
  /** stretch so that the last non-zero sigma equals this (diffusers' shift_terminal) */
  terminal?: number;
  /** use these sigmas (strictly decreasing, in (0, 1]) instead of linspace; shifts still apply */
  sigmas?: readonly number[];
}

export class ScheduleError extends Error {
  override name = 'ScheduleError';
}

/** mu of the dynamic shift for `tokens` image tokens: linear through (baseSeq, baseShift), (maxSeq, maxShift). */
export function dynamicMu(tokens: number, c: DynamicShift): number {
  const m = (c.maxShift - c.baseShift) / (c.maxSeq - c.baseSeq);
  return c.baseShift + m * (tokens - c.baseSeq);
}

export function staticShift(sigma: number, s: number): number {
  return (s * sigma) / (1 + (s - 1) * sigma);
}

export function exponentialShift(sigma: number, mu: number): number {
  const e = Math.exp(mu);
  return e / (e + (1 / sigma - 1));
}

/** diffusers' stretch_shift_to_terminal: 1 - sigma scaled so that the last sigma becomes `terminal`. */
export function stretchToTerminal(sigmas: readonly number[], terminal: number): number[] {
  const last = 1 - sigmas[sigmas.length - 1]!;
  const k = last / (1 - terminal);
  return sigmas.map((s) => 1 - (1 - s) / k);
}

export function linspace(a: number, b: number, n: number): number[] {
  if (n === 1) return [a];
  return Array.from({ length: n }, (_, i) => a + ((b - a) * i) / (n - 1));
}

/** The N + 1 sigmas of a schedule, strictly decreasing, ending with 0. */
export function flowSigmas(o: ScheduleOptions): Float64Array {
  const N = o.steps;
  if (!(Number.isInteger(N) && N >= 1)) throw new ScheduleError(`steps must be a positive integer, got ${N}`);
  if (o.shift !== undefined && !(Number.isFinite(o.shift) && o.shift > 0)) throw new ScheduleError(`shift must be a positive number, got ${o.shift}`);
  if (o.shift !== undefined && o.shift !== 1 && o.dynamicShift) throw new ScheduleError('a static shift and the dynamic shift are exclusive; choose one');
  let s: number[];
  if (o.sigmas) {
    s = [...o.sigmas];
    if (s.length !== N) throw new ScheduleError(`${s.length} user sigmas for ${N} steps`);
    s.forEach((v, i) => {
      if (!(Number.isFinite(v) && v > 0 && v <= 1)) throw new ScheduleError(`user sigma ${i} is ${v}; sigmas must lie in (0, 1]`);
      if (i > 0 && !(v < s[i - 1]!)) throw new ScheduleError(`user sigmas must be strictly decreasing (sigma ${i - 1} = ${s[i - 1]}, sigma ${i} = ${v})`);
    });
  } else s = linspace(1, 1 / N, N);
  if (o.dynamicShift) {
    const t = o.imageTokens;
    if (!(t !== undefined && Number.isFinite(t) && t > 0)) throw new ScheduleError('the dynamic shift needs the number of image tokens');
    const mu = dynamicMu(t, o.dynamicShift);
    s = s.map((v) => exponentialShift(v, mu));
  } else if (o.shift !== undefined && o.shift !== 1) {
    const sh = o.shift;
    s = s.map((v) => staticShift(v, sh));
  }
  if (o.terminal !== undefined) {
    if (!(Number.isFinite(o.terminal) && o.terminal > 0 && o.terminal < 1)) throw new ScheduleError(`terminal must lie in (0, 1), got ${o.terminal}`);
    if (s[s.length - 1] === 1) throw new ScheduleError('a one-step schedule at sigma 1 cannot be stretched to a terminal sigma');
    s = stretchToTerminal(s, o.terminal);
  }
  const out = new Float64Array(N + 1);
  out.set(s);
  out[N] = 0;
  return out;
}

/**
 * img2img: keep the last `strength` fraction of the steps, as diffusers' get_timesteps does
 * (t_start = floor(max(N - N * strength, 0)); the steps from sigma[t_start] on are run).
 */
export function truncateForStrength(sigmas: Float64Array, strength: number): Float64Array {
  if (!(Number.isFinite(strength) && strength > 0 && strength <= 1)) throw new ScheduleError(`strength must lie in (0, 1], got ${strength}`);
  const N = sigmas.length - 1;
  const start = Math.floor(Math.max(N - N * strength, 0));
  const run = N - start;
  if (run < 1) throw new ScheduleError(`strength ${strength} of ${N} steps runs no step; raise --strength or --steps`);
  return sigmas.slice(start);
}
