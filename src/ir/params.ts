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
/**
 * Fused ops (src/ir/ops/fused.ts): each is defined by a reference decomposition into the
 * primitives above, which is its float64 reference, its VJP and its fallback lowering. The fusion
 * pass (src/passes/fusion/) makes them from primitive patterns; lowerings pick an ONNX form per
 * target (src/passes/fusion/targets.ts).
 */
export interface FusedParams {
  /** x * rsqrt(mean(x^2, -1) + eps) [* w]; inputs (x, w?) */
  rms_norm: { eps: number; weight: boolean };
  /** (x - mean) * rsqrt(var + eps) [* w] [+ b] over the last axis; inputs (x, w?, b?) */
  layer_norm: { eps: number; weight: boolean; bias: boolean };
  gelu: { approximate: 'none' | 'tanh' };
  /**
   * Rotary embedding of the first R = 2 * cos.shape[-1] channels of x [..., S, D] (the rest pass
   * through); inputs (x, cos, sin) with cos/sin [..., S, R/2] broadcasting against x's leading axes.
   * interleaved: pairs (x[2i], x[2i+1]) (GPT-J / FLUX); else halves (x[i], x[i + R/2]) (rotate_half).
   */
  rope: { interleaved: boolean };
  /**
   * Scaled dot-product attention: q [B, H, Sq, D], k/v [B, KV, Sk, D] (H a multiple of KV),
   * optional bool mask broadcasting to [B, H, Sq, Sk] (true = attend; masked scores = the dtype's
   * lowest value, so a fully masked row averages uniformly). Inputs (q, k, v, mask?).
   */
  sdpa: { scale: number; mask: boolean };
  /**
   * Residual add + RMSNorm, two outputs as two sibling nodes (like split's pieces): index 0 is
   * rms_norm(x + r, w), index 1 the sum x + r; siblings with equal inputs lower to one ONNX node
   * where the target has one (SkipSimplifiedLayerNormalization). Inputs (x, r, w?).
   */
  add_rms_norm: { eps: number; weight: boolean; index: 0 | 1 };
  /**
   * Residual add + LayerNorm, the add_rms_norm pair for LayerNorm: index 0 is
   * layer_norm(x + r, w?, b?), index 1 the sum; siblings with equal inputs lower to ONE
   * com.microsoft SkipLayerNormalization where the target uses it. Inputs (x, r, w?, b?).
   */
  add_layer_norm: { eps: number; weight: boolean; bias: boolean; index: 0 | 1 };
  /**
   * Attention over a KV cache, three outputs as three sibling nodes: index 0 is
   * sdpa(q, concat(past_k, k), concat(past_v, v), mask?), index 1 / 2 the grown cache
   * concat(past_k, k) / concat(past_v, v) along the sequence axis (the generation graphs'
   * present.* outputs). Siblings with equal inputs lower to ONE ONNX node where the target has one
   * (Attention-23 / MultiHeadAttention with past -> present). Inputs (q [B, H, S, D],
   * k [B, KV, S, D], v [B, KV, S, Dv], past_k [B, KV, P, D], past_v [B, KV, P, Dv], mask?) with the
   * mask broadcasting to [B, H, S, P + S] (sdpa's semantics).
   */
  kv_sdpa: { scale: number; mask: boolean; index: 0 | 1 | 2 };
  /** silu(a) * b (the SwiGLU gate); inputs (a, b) */
  swiglu: None;
  /** custom op ai.unifusion.AdaRMSNorm: rms_norm(x, w) * (1 + scale) + shift; inputs (x, w?, scale, shift) */
  ada_rms_norm: { eps: number; weight: boolean };
  /** custom op ai.unifusion.LayerPool: sum_i w[i] * x[..., i, :]; inputs (x [..., n, C], w [1, n]) -> [..., C] */
  layer_pool: None;
}
export type FusedKind = keyof FusedParams;

export interface OpParams extends UnaryParams, BinaryParams, FusedParams {
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
