// runtime/sampler against closed forms: the schedules' formulas and published constants, the
// exact flow of Gaussian data (mean, covariance, per-sample end points, convergence orders of
// Euler and Heun), CFG / normalisation / truncation formulas, seeds and early stopping.
import { describe, expect, it } from 'vitest';
import {
  cfgCombine,
  cfgRenormalize,
  dynamicMu,
  exponentialShift,
  flowSigmas,
  FLUX_SHIFT,
  guidanceActive,
  guided,
  KREA2_SHIFT,
  noised,
  seededNoise,
  solveFlow,
  staticShift,
  truncateForStrength,
  type Velocity,
} from '../runtime/sampler/index.ts';
import { Rng } from '../src/ir/init.ts';

describe('schedules', () => {
  it('base sigmas are linspace(1, 1/N, N) then 0', () => {
    const s = flowSigmas({ steps: 4 });
    expect([...s]).toEqual([1, 0.75, 0.5, 0.25, 0]);
    expect([...flowSigmas({ steps: 1 })]).toEqual([1, 0]);
  });

  it('static shift s*sigma/(1+(s-1)*sigma)', () => {
    const s = flowSigmas({ steps: 4, shift: 3 });
    const want = [1, 0.75, 0.5, 0.25].map((x) => (3 * x) / (1 + 2 * x));
    want.forEach((w, i) => expect(s[i]).toBeCloseTo(w, 14));
    expect(staticShift(0.5, 3)).toBeCloseTo(0.75, 15);
    expect(s[4]).toBe(0);
  });

  it('dynamic shift: mu linear in image tokens through the FLUX and Krea 2 constants', () => {
    expect(FLUX_SHIFT).toEqual({ baseSeq: 256, baseShift: 0.5, maxSeq: 4096, maxShift: 1.15 });
    expect(KREA2_SHIFT).toEqual({ baseSeq: 256, baseShift: 0.5, maxSeq: 6400, maxShift: 1.15 });
    expect(dynamicMu(256, FLUX_SHIFT)).toBeCloseTo(0.5, 14);
    expect(dynamicMu(4096, FLUX_SHIFT)).toBeCloseTo(1.15, 14);
    expect(dynamicMu(2176, FLUX_SHIFT)).toBeCloseTo(0.825, 14); // midpoint
    expect(dynamicMu(6400, KREA2_SHIFT)).toBeCloseTo(1.15, 14);
    expect(dynamicMu(3328, KREA2_SHIFT)).toBeCloseTo(0.825, 14);
    // e^mu / (e^mu + 1/sigma - 1): mu = 0 is the identity; 1024^2 FLUX (4096 tokens) at sigma 0.5
    expect(exponentialShift(0.3, 0)).toBeCloseTo(0.3, 15);
    const e = Math.exp(1.15);
    const s = flowSigmas({ steps: 2, dynamicShift: FLUX_SHIFT, imageTokens: 4096 });
    expect(s[0]).toBeCloseTo(1, 15);
    expect(s[1]).toBeCloseTo(e / (e + 1), 14);
  });

  it('terminal stretch puts the last sigma at the terminal value and keeps sigma_0', () => {
    const s = flowSigmas({ steps: 10, shift: 3, terminal: 0.1 });
    expect(s[0]).toBeCloseTo(1, 14);
    expect(s[9]).toBeCloseTo(0.1, 14);
    for (let i = 1; i < 10; i++) expect(s[i]!).toBeLessThan(s[i - 1]!);
  });

  it('user sigmas, validated', () => {
    expect([...flowSigmas({ steps: 3, sigmas: [0.9, 0.5, 0.1] })]).toEqual([0.9, 0.5, 0.1, 0]);
    expect(() => flowSigmas({ steps: 3, sigmas: [0.9, 0.95, 0.1] })).toThrow(/strictly decreasing/);
    expect(() => flowSigmas({ steps: 2, sigmas: [1.5, 0.1] })).toThrow(/\(0, 1\]/);
    expect(() => flowSigmas({ steps: 0 })).toThrow(/positive integer/);
    expect(() => flowSigmas({ steps: 2, shift: 2, dynamicShift: FLUX_SHIFT, imageTokens: 64 })).toThrow(/exclusive/);
    expect(() => flowSigmas({ steps: 2, dynamicShift: FLUX_SHIFT })).toThrow(/image tokens/);
  });

  it('img2img strength keeps the last steps as diffusers get_timesteps does', () => {
    const s = flowSigmas({ steps: 10 });
    expect(truncateForStrength(s, 1).length).toBe(11);
    expect(truncateForStrength(s, 0.55).length).toBe(7); // t_start = floor(4.5) = 4: 6 steps
    expect(truncateForStrength(s, 0.3).length).toBe(4); // t_start 7 (as Python computes it): 3 steps
    expect(truncateForStrength(s, 0.01).length).toBe(2); // floor(9.9) = 9: the last step alone
    expect(() => truncateForStrength(s, 0)).toThrow(/\(0, 1\]/);
  });
});

// ---------------------------------------------------------------------------------------- Gaussian flow

/**
 * Data x0 ~ N(mu, Sigma) in d dims, eps ~ N(0, I), x_t = (1 - t) x0 + t eps. The optimal velocity
 * E[eps - x0 | x_t = x] = -mu + (t I - (1 - t) Sigma) M^-1 (x - (1 - t) mu), M = (1 - t)^2 Sigma + t^2 I,
 * and the exact flow from x_1 = z ends at mu + Sigma^(1/2) z (symmetric square root).
 */
function gaussian2d() {
  // Sigma = R diag(l) R^T
  const th = 0.7, l = [2.25, 0.16];
  const c = Math.cos(th), s = Math.sin(th);
  const R = [[c, -s], [s, c]];
  const sigma = [0, 1].map((i) => [0, 1].map((j) => R[i]![0]! * l[0]! * R[j]![0]! + R[i]![1]! * l[1]! * R[j]![1]!));
  const sqrt = [0, 1].map((i) => [0, 1].map((j) => R[i]![0]! * Math.sqrt(l[0]!) * R[j]![0]! + R[i]![1]! * Math.sqrt(l[1]!) * R[j]![1]!));
  const mu = [0.8, -1.3];
  const velocity: Velocity = async (x, t) => {
    const S = sigma;
    const M = [[(1 - t) ** 2 * S[0]![0]! + t * t, (1 - t) ** 2 * S[0]![1]!], [(1 - t) ** 2 * S[1]![0]!, (1 - t) ** 2 * S[1]![1]! + t * t]];
    const det = M[0]![0]! * M[1]![1]! - M[0]![1]! * M[1]![0]!;
    const Mi = [[M[1]![1]! / det, -M[0]![1]! / det], [-M[1]![0]! / det, M[0]![0]! / det]];
    const A = [[t - (1 - t) * S[0]![0]!, -(1 - t) * S[0]![1]!], [-(1 - t) * S[1]![0]!, t - (1 - t) * S[1]![1]!]];
    const K = [0, 1].map((i) => [0, 1].map((j) => A[i]![0]! * Mi[0]![j]! + A[i]![1]! * Mi[1]![j]!));
    const v = new Float64Array(x.length);
    for (let n = 0; n < x.length; n += 2) {
      const d0 = x[n]! - (1 - t) * mu[0]!, d1 = x[n + 1]! - (1 - t) * mu[1]!;
      v[n] = -mu[0]! + K[0]![0]! * d0 + K[0]![1]! * d1;
      v[n + 1] = -mu[1]! + K[1]![0]! * d0 + K[1]![1]! * d1;
    }
    return v;
  };
  const exact = (z: Float64Array) => {
    const out = new Float64Array(z.length);
    for (let n = 0; n < z.length; n += 2) {
      out[n] = mu[0]! + sqrt[0]![0]! * z[n]! + sqrt[0]![1]! * z[n + 1]!;
      out[n + 1] = mu[1]! + sqrt[1]![0]! * z[n]! + sqrt[1]![1]! * z[n + 1]!;
    }
    return out;
  };
  return { mu, sigma, velocity, exact };
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

describe('the exact flow of Gaussian data', () => {
  const g = gaussian2d();

  it('Euler with many steps reproduces the target mean and covariance', async () => {
    const n = 4000;
    const rng = new Rng(11, 'gauss');
    const z = Float64Array.from({ length: 2 * n }, () => rng.normal());
    const x = await solveFlow(Float64Array.from(z), g.velocity, { sigmas: flowSigmas({ steps: 1000 }) });
    expect(x.steps).toBe(1000);
    expect(x.evaluations).toBe(1000);
    // per sample against the exact map (deterministic, so a tight bound)
    expect(maxAbsDiff(x.x, g.exact(z))).toBeLessThan(1e-2);
    // the ensemble: mean and covariance within Monte-Carlo error of the target
    const m = [0, 0], C = [[0, 0], [0, 0]];
    for (let k = 0; k < n; k++) (m[0]! += x.x[2 * k]! / n), (m[1]! += x.x[2 * k + 1]! / n);
    for (let k = 0; k < n; k++)
      for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) C[i]![j]! += ((x.x[2 * k + i]! - m[i]!) * (x.x[2 * k + j]! - m[j]!)) / (n - 1);
    // standard error of the mean <= sqrt(2.25 / 4000) = 0.024; of a covariance entry ~ 2.25 sqrt(2 / n) = 0.05
    for (let i = 0; i < 2; i++) expect(Math.abs(m[i]! - g.mu[i]!)).toBeLessThan(0.1);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) expect(Math.abs(C[i]![j]! - g.sigma[i]![j]!)).toBeLessThan(0.15);
  });

  it('Heun error falls ~4x per halving of steps, Euler ~2x', async () => {
    const rng = new Rng(5, 'gauss-order');
    const z = Float64Array.from({ length: 2 * 64 }, () => rng.normal());
    const want = g.exact(z);
    const err = async (solver: 'euler' | 'heun', steps: number) => maxAbsDiff((await solveFlow(Float64Array.from(z), g.velocity, { sigmas: flowSigmas({ steps }), solver })).x, want);
    const e = await Promise.all([16, 32, 64, 128].map((n) => err('euler', n)));
    const h = await Promise.all([16, 32, 64, 128].map((n) => err('heun', n)));
    for (let i = 0; i < 3; i++) {
      const re = e[i]! / e[i + 1]!, rh = h[i]! / h[i + 1]!;
      expect(re).toBeGreaterThan(1.8);
      expect(re).toBeLessThan(2.2);
      expect(rh).toBeGreaterThan(3.5);
      expect(rh).toBeLessThan(4.5);
    }
    expect(h[0]!).toBeLessThan(e[0]!);
  });

  it('Heun costs two evaluations a step; a callback can stop early', async () => {
    const z = seededNoise([1], 2);
    const r = await solveFlow(Float64Array.from(z), g.velocity, { sigmas: flowSigmas({ steps: 8 }), solver: 'heun' });
    expect(r.evaluations).toBe(16);
    const seen: number[] = [];
    const s = await solveFlow(Float64Array.from(z), g.velocity, { sigmas: flowSigmas({ steps: 8 }), onStep: (rep) => (seen.push(rep.step), rep.step < 2) });
    expect(s).toMatchObject({ steps: 3, stopped: true, evaluations: 3 });
    expect(seen).toEqual([0, 1, 2]);
    const ac = new AbortController();
    ac.abort();
    expect(await solveFlow(Float64Array.from(z), g.velocity, { sigmas: flowSigmas({ steps: 8 }), signal: ac.signal })).toMatchObject({ steps: 0, stopped: true });
  });
});

// ---------------------------------------------------------------------------------------- guidance

describe('guidance', () => {
  const layout = { batch: 2, channels: 3, height: 4, width: 4, patch: 2 };
  const n = 2 * 3 * 4 * 4;
  const rng = new Rng(3, 'cfg');
  const c = Float64Array.from({ length: n }, () => rng.normal());
  const u = Float64Array.from({ length: n }, () => rng.normal());

  it('CFG is u + g (c - u); g = 1 is the conditional model, g = 0 the unconditional', () => {
    const v = cfgCombine(c, u, 4.5);
    for (let i = 0; i < n; i++) expect(v[i]).toBeCloseTo(u[i]! + 4.5 * (c[i]! - u[i]!), 13);
    const one = cfgCombine(c, u, 1), zero = cfgCombine(c, u, 0);
    for (let i = 0; i < n; i++) expect(one[i]).toBeCloseTo(c[i]!, 14), expect(zero[i]).toBe(u[i]);
  });

  it('CFG normalisation: every p x p x C token of the guided velocity gets the conditional norm, direction kept', () => {
    const v = cfgCombine(c, u, 5);
    const before = Float64Array.from(v);
    cfgRenormalize(v, c, layout);
    const tokenNorm = (a: ArrayLike<number>, b: number, r: number, q: number) => {
      let s = 0;
      for (let ch = 0; ch < 3; ch++) for (let y = r; y < r + 2; y++) for (let x = q; x < q + 2; x++) s += a[((b * 3 + ch) * 4 + y) * 4 + x]! ** 2;
      return Math.sqrt(s);
    };
    for (let b = 0; b < 2; b++)
      for (let r = 0; r < 4; r += 2)
        for (let q = 0; q < 4; q += 2) {
          expect(tokenNorm(v, b, r, q)).toBeCloseTo(tokenNorm(c, b, r, q), 12);
          // same direction: v = k * before with k = |c| / |before| > 0
          const k = tokenNorm(c, b, r, q) / tokenNorm(before, b, r, q);
          const i = ((b * 3 + 1) * 4 + r + 1) * 4 + q;
          expect(v[i]).toBeCloseTo(k * before[i]!, 12);
        }
  });

  it('truncation: guidance while 1 - sigma < ratio (Lumina-2), conditional branch alone after', async () => {
    const g = { scale: 3, truncation: 0.25 };
    expect(guidanceActive(g, 1)).toBe(true);
    expect(guidanceActive(g, 0.76)).toBe(true);
    expect(guidanceActive(g, 0.75)).toBe(false);
    expect(guidanceActive({ scale: 1 }, 1)).toBe(false);
    expect(guidanceActive({ scale: 2 }, 0.001)).toBe(true);
    const calls: string[] = [];
    const model = async (x: Float64Array, sigma: number, branches: 'cond' | 'both') => {
      calls.push(`${sigma}:${branches}`);
      const out = new Float64Array(branches === 'both' ? 2 * x.length : x.length);
      out.fill(1, 0, x.length); // cond velocity 1, uncond 0
      return out;
    };
    const v = guided(model, g, layout);
    const x = new Float64Array(n);
    const info = { step: 0, steps: 4, sigma: 1, sigmaNext: 0.75, stage: 0 as const };
    expect((await v(x, 1, info))[0]).toBe(3); // 0 + 3 (1 - 0)
    expect((await v(x, 0.5, info))[0]).toBe(1);
    expect(calls).toEqual(['1:both', '0.5:cond']);
    expect(() => guided(model, { scale: -1 }, layout)).toThrow(/non-negative/);
    expect(() => guided(model, { scale: 2, truncation: 2 }, layout)).toThrow(/\[0, 1\]/);
  });
});

describe('seeds', () => {
  it('one generator per image: image i is the same alone or in a batch', () => {
    const all = seededNoise([7, 8, 9], 10);
    expect([...seededNoise([9], 10)]).toEqual([...all.subarray(20, 30)]);
    expect([...seededNoise([7, 8, 9], 10)]).toEqual([...all]);
    expect(maxAbsDiff(seededNoise([1], 10), seededNoise([2], 10))).toBeGreaterThan(0.1);
  });
  it('img2img noising is the forward process', () => {
    const x0 = [1, 2], e = [3, -1];
    expect([...noised(x0, e, 0.25)]).toEqual([0.75 * 1 + 0.25 * 3, 0.75 * 2 - 0.25]);
  });
});
