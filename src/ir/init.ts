// Seeded parameter initialisation: the values of a param depend only on
// (seed, name, shape, init), never on build order, so a graph re-traced in
// another order (or a subset of it) gets identical weights.
import type { Init } from './params.ts';

function hash32(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** xoshiro128** generator: small, fast, good statistical quality. */
export class Rng {
  private s = new Uint32Array(4);
  constructor(seed: number, stream = '') {
    let x = hash32(stream, seed) || 1;
    for (let i = 0; i < 4; i++) {
      // splitmix32 to spread the seed
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(((Math.imul(s[1]!, 5) << 7) | (Math.imul(s[1]!, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!; s[3]! ^= s[1]!; s[1]! ^= s[2]!; s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = ((s[3]! << 11) | (s[3]! >>> 21)) >>> 0;
    return result;
  }
  /** uniform in [0, 1) with 53 random bits */
  uniform(): number {
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992;
  }
  normal(): number {
    let u = 0;
    while (u === 0) u = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }
  /** Internal state, for checkpoints. */
  state(): number[] {
    return Array.from(this.s);
  }
  setState(st: readonly number[]): void {
    this.s.set(st);
  }
}

export function initValues(init: Init, n: number, seed: number, name: string): Float64Array {
  const out = new Float64Array(n);
  switch (init.kind) {
    case 'zeros':
      return out;
    case 'ones':
      return out.fill(1);
    case 'const':
      return out.fill(init.value);
    case 'normal': {
      const rng = new Rng(seed, name);
      const mean = init.mean ?? 0;
      for (let i = 0; i < n; i++) out[i] = mean + init.std * rng.normal();
      return out;
    }
    case 'uniform': {
      const rng = new Rng(seed, name);
      for (let i = 0; i < n; i++) out[i] = (2 * rng.uniform() - 1) * init.bound;
      return out;
    }
  }
}
