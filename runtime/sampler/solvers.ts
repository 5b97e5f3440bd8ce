// ODE solvers for the flow dx/dsigma = v(x, sigma), run from sigma_0 (noise) to 0 (image).
//
//   Euler  x <- x + (sigma' - sigma) v(x, sigma)                                  1 evaluation / step
//   Heun   v1 = v(x, sigma), x~ = x + h v1, v2 = v(x~, sigma'), x <- x + h (v1 + v2) / 2   2 / step
// Heun takes its corrector on the last step too (k-diffusion switches to Euler there because its
// denoiser form divides by sigma; the velocity form has no 1/sigma), so its order 2 holds over the
// whole schedule (tested on a Gaussian whose flow is known in closed form).
import type { StepInfo, Velocity } from './guidance.ts';

export type SolverName = 'euler' | 'heun';
export const SOLVERS: readonly SolverName[] = ['euler', 'heun'];

export interface StepReport {
  step: number;
  steps: number;
  sigma: number;
  sigmaNext: number;
  /** the state after this step (the sampler's own buffer: copy it to keep it) */
  x: Float64Array;
  /** the velocity the update used (Heun: the average) */
  velocity: Float64Array;
  /** ms since the loop started */
  elapsedMs: number;
}

export interface SolveOptions {
  /** N + 1 sigmas, decreasing to the last (0 for a full sample) */
  sigmas: Float64Array;
  solver?: SolverName;
  /** after every step; return false to stop early (the current x is returned) */
  onStep?: (r: StepReport) => void | boolean | Promise<void | boolean>;
  /** aborts between steps */
  signal?: AbortSignal;
}

export interface SolveResult {
  x: Float64Array;
  /** steps taken */
  steps: number;
  /** true when onStep or the signal stopped the loop before the last sigma */
  stopped: boolean;
  /** velocity evaluations */
  evaluations: number;
}

export class SolverError extends Error {
  override name = 'SolverError';
}

/** Integrate from x (at sigmas[0]; updated in place and returned) through every sigma. */
export async function solveFlow(x: Float64Array, velocity: Velocity, opts: SolveOptions): Promise<SolveResult> {
  const s = opts.sigmas;
  const solver = opts.solver ?? 'euler';
  if (!SOLVERS.includes(solver)) throw new SolverError(`unknown sampler '${solver}' (known: ${SOLVERS.join(', ')})`);
  if (s.length < 2) throw new SolverError(`a schedule needs at least 2 sigmas, got ${s.length}`);
  const N = s.length - 1;
  const t0 = performance.now();
  let evaluations = 0;
  const call = async (at: Float64Array, info: StepInfo) => {
    const v = await velocity(at, info.sigma, info);
    evaluations++;
    if (v.length !== at.length) throw new SolverError(`the velocity has ${v.length} values for a state of ${at.length}`);
    return v;
  };
  for (let i = 0; i < N; i++) {
    if (opts.signal?.aborted) return { x, steps: i, stopped: true, evaluations };
    const sigma = s[i]!, next = s[i + 1]!, h = next - sigma;
    const base = { step: i, steps: N, sigma, sigmaNext: next };
    const v1 = await call(x, { ...base, stage: 0 });
    let v: Float64Array;
    if (solver === 'euler') v = v1;
    else {
      const pred = new Float64Array(x.length);
      for (let k = 0; k < x.length; k++) pred[k] = x[k]! + h * v1[k]!;
      const v2 = await call(pred, { ...base, sigma: next, stage: 1 });
      v = new Float64Array(x.length);
      for (let k = 0; k < x.length; k++) v[k] = 0.5 * (v1[k]! + v2[k]!);
    }
    for (let k = 0; k < x.length; k++) x[k] += h * v[k]!;
    const go = await opts.onStep?.({ ...base, x, velocity: v, elapsedMs: performance.now() - t0 });
    if (go === false && i < N - 1) return { x, steps: i + 1, stopped: true, evaluations };
  }
  return { x, steps: N, stopped: false, evaluations };
}
