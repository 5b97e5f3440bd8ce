// Symbolic tensors of the DSL. Every method appends one primitive to the active
// trace; the op table checks shapes as it goes, and errors name the user's line.
import { dimDiv, dimProd, dimStr, shapeStr, type Dim, type Shape } from '../ir/dims.ts';
import { isFloat, type DType } from '../ir/dtype.ts';
import type { Node } from '../ir/node.ts';
import type { BinaryKind, OpKind, OpParams, UnaryKind } from '../ir/params.ts';
import { currentTrace, DSLError } from './trace.ts';
import { userSite } from './site.ts';
import { checkChoice, checkDType, checkOptions, checkShape } from './check.ts';

/** Anything usable where a tensor is expected: numbers become constants of the other operand's dtype. */
export type TensorLike = Tensor | number | { readonly t: Tensor };

function apply<K extends OpKind>(op: K, params: OpParams[K], inputs: readonly Tensor[]): Tensor {
  return new Tensor(currentTrace().apply(op, params, inputs.map((t) => t.node)));
}

export function constant(values: number | ArrayLike<number>, dtype: DType = 'f32', shape?: readonly number[]): Tensor {
  checkDType('constant', dtype);
  if (shape !== undefined) checkShape('constant', shape);
  const data = typeof values === 'number' ? Float64Array.of(values) : Float64Array.from(values);
  const s = shape ? [...shape] : typeof values === 'number' ? [] : [data.length];
  return apply('constant', { value: { dtype, shape: s, data } }, []);
}

export function asTensor(x: TensorLike, like?: Tensor): Tensor {
  if (x instanceof Tensor) return x;
  if (typeof x === 'number') return constant(x, like?.dtype ?? 'f32');
  return x.t;
}

function normAxes(axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  return (typeof axes === 'number' ? [axes] : [...axes]).map((a) => (a < 0 ? a + rank : a));
}

export class Tensor {
  constructor(readonly node: Node) {}
  get shape(): Shape {
    return this.node.shape;
  }
  get dtype(): DType {
    return this.node.dtype;
  }
  get rank(): number {
    return this.node.rank;
  }
  /** size of axis i (negative counts from the end) */
  dim(i: number): Dim {
    const a = i < 0 ? i + this.rank : i;
    const d = this.shape[a];
    if (d === undefined) throw new DSLError(`axis ${i} out of range for ${this.toString()}`, userSite());
    return d;
  }
  toString(): string {
    return `Tensor(${this.dtype}${shapeStr(this.shape)})`;
  }

  private un(op: UnaryKind): Tensor {
    return apply(op, {}, [this]);
  }
  private bin(op: BinaryKind, o: TensorLike, reverse = false): Tensor {
    const other = asTensor(o, this);
    return apply(op, {}, reverse ? [other, this] : [this, other]);
  }

  add(o: TensorLike): Tensor { return this.bin('add', o); }
  sub(o: TensorLike): Tensor { return this.bin('sub', o); }
  rsub(o: TensorLike): Tensor { return this.bin('sub', o, true); }
  mul(o: TensorLike): Tensor { return this.bin('mul', o); }
  div(o: TensorLike): Tensor { return this.bin('div', o); }
  rdiv(o: TensorLike): Tensor { return this.bin('div', o, true); }
  pow(o: TensorLike): Tensor { return this.bin('pow', o); }
  maximum(o: TensorLike): Tensor { return this.bin('max', o); }
  minimum(o: TensorLike): Tensor { return this.bin('min', o); }
  eq(o: TensorLike): Tensor { return this.bin('eq', o); }
  lt(o: TensorLike): Tensor { return this.bin('lt', o); }
  le(o: TensorLike): Tensor { return this.bin('le', o); }
  gt(o: TensorLike): Tensor { return this.bin('gt', o); }
  ge(o: TensorLike): Tensor { return this.bin('ge', o); }
  and(o: TensorLike): Tensor { return this.bin('and', o); }
  or(o: TensorLike): Tensor { return this.bin('or', o); }

  neg(): Tensor { return this.un('neg'); }
  exp(): Tensor { return this.un('exp'); }
  log(): Tensor { return this.un('log'); }
  sqrt(): Tensor { return this.un('sqrt'); }
  rsqrt(): Tensor { return this.un('rsqrt'); }
  reciprocal(): Tensor { return this.un('reciprocal'); }
  tanh(): Tensor { return this.un('tanh'); }
  sigmoid(): Tensor { return this.un('sigmoid'); }
  erf(): Tensor { return this.un('erf'); }
  sin(): Tensor { return this.un('sin'); }
  cos(): Tensor { return this.un('cos'); }
  abs(): Tensor { return this.un('abs'); }
  not(): Tensor { return this.un('not'); }
  square(): Tensor { return this.mul(this); }

  /** select: this ? a : b (this must be bool) */
  where(a: TensorLike, b: TensorLike): Tensor {
    const like = a instanceof Tensor ? a : b instanceof Tensor ? b : undefined;
    return apply('where', {}, [this, asTensor(a, like), asTensor(b, like)]);
  }

  cast(to: DType): Tensor {
    checkDType(`cast of ${this.toString()}`, to);
    return to === this.dtype ? this : apply('cast', { to }, [this]);
  }
  /** cast to f32 when in a low-precision float (norm statistics, softmax) */
  upcast(): Tensor {
    return this.dtype === 'f16' || this.dtype === 'bf16' ? this.cast('f32') : this;
  }

  matmul(o: TensorLike): Tensor {
    return apply('matmul', {}, [this, asTensor(o, this)]);
  }

  sum(axes?: number | readonly number[], keepdims = false): Tensor {
    return apply('reduce_sum', { axes: normAxes(axes, this.rank), keepdims }, [this]);
  }
  mean(axes?: number | readonly number[], keepdims = false): Tensor {
    return apply('reduce_mean', { axes: normAxes(axes, this.rank), keepdims }, [this]);
  }
  max(axes?: number | readonly number[], keepdims = false): Tensor {
    return apply('reduce_max', { axes: normAxes(axes, this.rank), keepdims }, [this]);
  }
  softmax(axis = -1): Tensor {
    return apply('softmax', { axis: axis < 0 ? axis + this.rank : axis }, [this]);
  }

  /** reshape; one dim may be -1 (inferred, symbolic allowed) */
  reshape(...shape: (Dim | -1)[] | [readonly (Dim | -1)[]]): Tensor {
    const dims = (Array.isArray(shape[0]) ? shape[0] : shape) as (Dim | -1)[];
    const holes = dims.filter((d) => d === -1).length;
    if (holes > 1) throw new DSLError(`reshape ${this.toString()} -> [${dims.map((d) => dimStr(d)).join(', ')}]: more than one -1`, userSite());
    let out = dims as Dim[];
    if (holes === 1) {
      const known = dimProd(dims.filter((d) => d !== -1));
      out = dims.map((d) => (d === -1 ? dimDiv(dimProd(this.shape), known) : d));
    }
    return apply('reshape', { shape: out }, [this]);
  }
  transpose(...perm: number[]): Tensor {
    return apply('transpose', { perm: perm.map((p) => (p < 0 ? p + this.rank : p)) }, [this]);
  }
  /** swap two axes */
  swap(a: number, b: number): Tensor {
    const perm = Array.from({ length: this.rank }, (_, i) => i);
    const [x, y] = [a < 0 ? a + this.rank : a, b < 0 ? b + this.rank : b];
    [perm[x], perm[y]] = [perm[y]!, perm[x]!];
    return this.transpose(...perm);
  }
  /** transpose of the last two axes */
  get T(): Tensor {
    return this.swap(-1, -2);
  }
  expand(...shape: Dim[]): Tensor {
    return apply('expand', { shape }, [this]);
  }
  unsqueeze(axis: number): Tensor {
    const a = axis < 0 ? axis + this.rank + 1 : axis;
    const s = [...this.shape];
    s.splice(a, 0, 1);
    return this.reshape(s);
  }
  squeeze(axis: number): Tensor {
    const a = axis < 0 ? axis + this.rank : axis;
    if (this.shape[a] !== 1) throw new DSLError(`squeeze axis ${axis} of ${this.toString()}: size is not 1`, userSite());
    return this.reshape(this.shape.filter((_, i) => i !== a));
  }
  /** slice along one axis, Python semantics (end defaults to the end in the direction of step) */
  slice(axis: number, start: number, end?: number, step = 1): Tensor {
    end ??= step > 0 ? Number.MAX_SAFE_INTEGER : -Number.MAX_SAFE_INTEGER;
    return apply('slice', { axes: [axis < 0 ? axis + this.rank : axis], starts: [start], ends: [end], steps: [step] }, [this]);
  }
  split(axis: number, sizes: readonly Dim[]): Tensor[] {
    const a = axis < 0 ? axis + this.rank : axis;
    return sizes.map((_, index) => apply('split', { axis: a, sizes: [...sizes], index }, [this]));
  }
  /** split into n equal pieces along axis */
  chunk(n: number, axis: number): Tensor[] {
    const size = dimDiv(this.dim(axis), n);
    return this.split(axis, Array.from({ length: n }, () => size));
  }
  gather(indices: Tensor, axis = 0): Tensor {
    return apply('gather', { axis: axis < 0 ? axis + this.rank : axis }, [this, indices]);
  }
  pad(pads: readonly number[], mode: 'constant' | 'reflect' | 'edge' = 'constant', value = 0): Tensor {
    checkChoice('pad mode', mode, ['constant', 'reflect', 'edge'] as const);
    return apply('pad', { pads: [...pads], mode, value }, [this]);
  }
  upsampleNearest(scale: number): Tensor {
    return apply('upsample_nearest', { scale }, [this]);
  }
  isFloat(): boolean {
    return isFloat(this.dtype);
  }
}

export function concat(tensors: readonly Tensor[], axis: number): Tensor {
  if (tensors.length === 0) throw new DSLError('concat of no tensors', userSite());
  const r = tensors[0]!.rank;
  return apply('concat', { axis: axis < 0 ? axis + r : axis }, tensors);
}

export function range(size: Dim, opts: { start?: number; delta?: number; dtype?: DType } = {}): Tensor {
  checkOptions('range', opts, ['start', 'delta', 'dtype']);
  if (opts.dtype !== undefined) checkDType('range', opts.dtype);
  return apply('range', { start: opts.start ?? 0, delta: opts.delta ?? 1, size, dtype: opts.dtype ?? 'i64' }, []);
}

export function conv2d(
  x: Tensor,
  w: TensorLike,
  bias: TensorLike | undefined,
  opts: { stride?: number | [number, number]; padding?: number | [number, number, number, number]; dilation?: number | [number, number]; groups?: number } = {},
): Tensor {
  checkOptions('conv2d', opts, ['stride', 'padding', 'dilation', 'groups']);
  const pair = (v: number | [number, number] | undefined, d: number): [number, number] => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v);
  const p = opts.padding ?? 0;
  const pads: [number, number, number, number] = typeof p === 'number' ? [p, p, p, p] : p;
  const ins = [x, asTensor(w, x)];
  if (bias !== undefined) ins.push(asTensor(bias, x));
  return apply('conv2d', { strides: pair(opts.stride, 1), pads, dilations: pair(opts.dilation, 1), group: opts.groups ?? 1 }, ins);
}

export { apply as applyOp };
