// Float64 reference tensors and the index arithmetic the reference evaluator needs.
// Deliberately simple loops: this is the oracle every lowering is checked against.
import type { DType } from './dtype.ts';
import { roundTo } from './dtype.ts';
import { OpError } from './node.ts';

export interface RefTensor {
  dtype: DType;
  shape: number[];
  data: Float64Array;
}

export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function ref(dtype: DType, shape: number[], data?: Float64Array): RefTensor {
  const n = size(shape);
  if (data && data.length !== n) throw new OpError(`reference tensor: ${data.length} values for shape [${shape}]`);
  return { dtype, shape, data: data ?? new Float64Array(n) };
}

/** Round every element to what `dtype` can hold (casts, integer results). */
export function rounded(t: RefTensor, dtype: DType = t.dtype): RefTensor {
  const out = new Float64Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = roundTo(dtype, t.data[i]!);
  return { dtype, shape: t.shape, data: out };
}

export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new OpError(`cannot broadcast [${a}] with [${b}]`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Offsets into `shape` (right-aligned, broadcast) for every index of `out`. */
export function broadcastOffsets(shape: readonly number[], out: readonly number[]): Int32Array {
  const n = size(out);
  const offs = new Int32Array(n);
  const r = out.length;
  const st = strides(shape);
  const eff = out.map((_, i) => {
    const j = i - (r - shape.length);
    return j < 0 || shape[j] === 1 ? 0 : st[j]!;
  });
  const idx = new Array<number>(r).fill(0);
  let off = 0;
  for (let k = 0; k < n; k++) {
    offs[k] = off;
    for (let ax = r - 1; ax >= 0; ax--) {
      idx[ax]!++;
      off += eff[ax]!;
      if (idx[ax]! < out[ax]!) break;
      off -= eff[ax]! * idx[ax]!;
      idx[ax] = 0;
    }
  }
  return offs;
}

export function mapN(ins: RefTensor[], dtype: DType, f: (...xs: number[]) => number): RefTensor {
  const shape = ins.map((t) => t.shape).reduce((a, b) => broadcastShape(a, b));
  const offs = ins.map((t) => broadcastOffsets(t.shape, shape));
  const out = ref(dtype, shape);
  const xs = new Array<number>(ins.length);
  for (let k = 0; k < out.data.length; k++) {
    for (let j = 0; j < ins.length; j++) xs[j] = ins[j]!.data[offs[j]![k]!]!;
    out.data[k] = f(...xs);
  }
  return out;
}

export function transposeRef(t: RefTensor, perm: readonly number[]): RefTensor {
  const shape = perm.map((p) => t.shape[p]!);
  const st = strides(t.shape);
  const pst = perm.map((p) => st[p]!);
  const out = ref(t.dtype, shape);
  const idx = new Array<number>(shape.length).fill(0);
  let off = 0;
  for (let k = 0; k < out.data.length; k++) {
    out.data[k] = t.data[off]!;
    for (let ax = shape.length - 1; ax >= 0; ax--) {
      idx[ax]!++;
      off += pst[ax]!;
      if (idx[ax]! < shape[ax]!) break;
      off -= pst[ax]! * idx[ax]!;
      idx[ax] = 0;
    }
  }
  return out;
}

/** Reduce over `axes`: combine folds values, finish maps (acc, count) to the result. */
export function reduceRef(
  t: RefTensor,
  axes: readonly number[],
  keepdims: boolean,
  init: number,
  combine: (acc: number, x: number) => number,
  finish: (acc: number, count: number) => number = (a) => a,
): RefTensor {
  const r = t.shape.length;
  const red = new Set(axes.map((a) => (a < 0 ? a + r : a)));
  const kept = t.shape.map((d, i) => (red.has(i) ? 1 : d));
  const out = ref(t.dtype, kept, new Float64Array(size(kept)).fill(init));
  const count = t.shape.reduce((acc, d, i) => (red.has(i) ? acc * d : acc), 1);
  const ost = strides(kept);
  const idx = new Array<number>(r).fill(0);
  for (let k = 0; k < t.data.length; k++) {
    let o = 0;
    for (let ax = 0; ax < r; ax++) if (!red.has(ax)) o += idx[ax]! * ost[ax]!;
    out.data[o] = combine(out.data[o]!, t.data[k]!);
    for (let ax = r - 1; ax >= 0; ax--) {
      if (++idx[ax]! < t.shape[ax]!) break;
      idx[ax] = 0;
    }
  }
  for (let i = 0; i < out.data.length; i++) out.data[i] = finish(out.data[i]!, count);
  if (!keepdims) out.shape = t.shape.filter((_, i) => !red.has(i));
  return out;
}

/** Generic gather by output multi-index: src(idx) gives the flat source offset or -1 (fill). */
export function buildRef(dtype: DType, shape: number[], src: (idx: number[]) => number): RefTensor {
  const out = ref(dtype, shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let k = 0; k < out.data.length; k++) {
    out.data[k] = src(idx);
    for (let ax = shape.length - 1; ax >= 0; ax--) {
      if (++idx[ax]! < shape[ax]!) break;
      idx[ax] = 0;
    }
  }
  return out;
}

export function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is only 1e-7; use a series / continued fraction to ~1e-15.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Taylor series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
    let sum = 0, term = ax, n = 0;
    while (Math.abs(term) > 1e-17 * Math.abs(sum) || n < 3) {
      sum += term / (2 * n + 1);
      n++;
      term *= (-ax * ax) / n;
      if (n > 200) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for larger |x|
  let f = ax, c = ax, d = 0;
  for (let k = 1; k < 200; k++) {
    const a = k / 2;
    d = ax + a * d;
    d = d === 0 ? 1e-300 : 1 / d;
    c = ax + a / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}
