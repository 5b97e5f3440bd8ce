// The op vocabulary of the IR and each op's typed parameters.
// Adding a kind here without an entry in src/ir/optable.ts is a tsc error.
import type { DType } from './dtype.ts';
import type { Dim } from './dims.ts';

export type Init =
  | { kind: 'normal'; std: number; mean?: number }
  | { kind: 'uniform'; bound: number }
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'const'; value: number };

export interface ConstValue {
  dtype: DType;
  shape: number[];
  /** element values as doubles (integers exact up to 2^53, bools 0/1) */
  data: Float64Array;
}

type None = Record<never, never>;

export interface UnaryParams {
  neg: None; exp: None; log: None; sqrt: None; rsqrt: None; reciprocal: None;
  tanh: None; sigmoid: None; erf: None; sin: None; cos: None; abs: None; not: None;
}
export interface BinaryParams {
  add: None; sub: None; mul: None; div: None; pow: None; max: None; min: None;
  eq: None; lt: None; le: None; gt: None; ge: None; and: None; or: None;
}
export interface OpParams extends UnaryParams, BinaryParams {
  /** graph input; symbolic dims allowed */
  input: { name: string; dtype: DType; shape: Dim[] };
  /** trainable or frozen weight, named by its dot path */
  param: { name: string; dtype: DType; shape: number[]; init: Init; frozen: boolean; seed: number };
  constant: { value: ConstValue };
  where: None;
  cast: { to: DType };
  matmul: None;
  reduce_sum: { axes: number[]; keepdims: boolean };
  reduce_mean: { axes: number[]; keepdims: boolean };
  reduce_max: { axes: number[]; keepdims: boolean };
  softmax: { axis: number };
  reshape: { shape: Dim[] };
  transpose: { perm: number[] };
  expand: { shape: Dim[] };
  concat: { axis: number };
  /** one piece of a split; siblings with equal (input, axis, sizes) lower to one ONNX Split */
  split: { axis: number; sizes: Dim[]; index: number };
  /** static slice; ends are clamped (use a large number for "to the end") */
  slice: { axes: number[]; starts: number[]; ends: number[]; steps: number[] };
  gather: { axis: number };
  /** pads: [begin_0..begin_n-1, end_0..end_n-1] as in ONNX */
  pad: { pads: number[]; mode: 'constant' | 'reflect' | 'edge'; value: number };
  range: { start: number; delta: number; size: Dim; dtype: DType };
  /** inputs x [N,C,H,W], w [O,C/group,kh,kw], optional bias [O]; pads [top,left,bottom,right] */
  conv2d: { strides: [number, number]; pads: [number, number, number, number]; dilations: [number, number]; group: number };
  upsample_nearest: { scale: number };
  /**
   * Identity that no optimiser may look through (ours: distinct per tag; onnxruntime's CSE:
   * lowered as x + RandomUniformLike(x, 0, 0)). Recomputed regions start from barriers so
   * their copies are not merged back into the originals.
   */
  barrier: { tag: number };
  /** 0-d tensor holding the runtime value of a (symbolic) dim */
  dim_value: { dim: Dim; dtype: DType };
  /** gather's adjoint: inputs (g, indices); scatter-adds g into zeros of `shape` along `axis` */
  gather_grad: { axis: number; shape: Dim[] };
  /** conv2d's input adjoint: inputs (g, w); output has `shape` (the conv input's) */
  conv2d_grad_input: OpParams['conv2d'] & { shape: Dim[] };
  /** conv2d's weight adjoint: inputs (x, g); output has `shape` (the weight's) */
  conv2d_grad_weight: OpParams['conv2d'] & { shape: number[] };
}
export type OpKind = keyof OpParams;
export type UnaryKind = keyof UnaryParams;
export type BinaryKind = keyof BinaryParams;
